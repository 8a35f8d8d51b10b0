// Chorus review console: everything shown comes from the role-checked JSON API.
// The contributor key lives in localStorage (every tab of this site, until "Sign out", which
// signs out the other tabs too) and travels as X-API-Key; no cookie, so no request is ever
// authenticated without this page's script adding the key (nothing for a forged form to ride).
// API paths are relative to the page, so the console works under a proxy's path prefix.
"use strict";

(function () {
  const KEY = "chorus.contributorKey";
  const COURSE = "chorus.course";
  const REFRESH_MS = 30000;
  const state = { items: [], index: 0, course: null, busy: false, nextCursor: null };
  const $ = (id) => document.getElementById(id);

  function status(message, isError) {
    const line = $("status");
    line.textContent = message || "";
    line.classList.toggle("error", Boolean(isError));
  }

  async function api(method, path, body) {
    const headers = { "X-API-Key": localStorage.getItem(KEY) || "" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(path, {
      method: method,
      headers: headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    let data = null;
    if (response.status !== 204) data = await response.json().catch(() => null);
    if (response.status === 401) signOut("The key was not accepted. Paste it again.");
    return { status: response.status, ok: response.ok, data: data };
  }

  function showLoggedIn(loggedIn) {
    $("login").hidden = loggedIn;
    $("console").hidden = !loggedIn;
    $("session").hidden = !loggedIn;
  }

  function signOut(message) {
    localStorage.removeItem(KEY);
    state.items = [];
    showLoggedIn(false);
    status(message || "Signed out.", Boolean(message));
  }

  async function loadCourses() {
    const answer = await api("GET", "v1/courses");
    if (!answer.ok) {
      if (answer.status !== 401) status(problem(answer, "Could not load the courses."), true);
      return false;
    }
    const select = $("course");
    const wanted = state.course || localStorage.getItem(COURSE);
    const known = Array.from(select.options, (option) => option.value);
    if (known.join("\n") !== answer.data.map((c) => c.course).join("\n")) {
      // A new set of courses: rebuild the list (an unchanged one keeps its open state).
      select.replaceChildren();
      for (const course of answer.data) {
        const option = document.createElement("option");
        option.value = course.course;
        select.append(option);
      }
      if (wanted && answer.data.some((c) => c.course === wanted)) select.value = wanted;
    }
    for (const course of answer.data) showOpenCount(course.course, course.open_reports);
    state.course = select.value || null;
    return true;
  }

  // Other contributors decide too: the counts and the queue follow the server's, and the
  // report under review stays selected while it is still open.
  async function refresh() {
    if ($("console").hidden || document.hidden || state.busy) return;
    if (await loadCourses()) await loadQueue(true);
  }

  function showOpenCount(course, open) {
    for (const option of $("course").options) {
      if (option.value === course) option.textContent = course + " (" + open + " open)";
    }
    if (course === state.course) $("count").textContent = "(" + open + " open)";
  }

  async function loadQueue(keepSelection) {
    if (!state.course) {
      state.items = [];
      render();
      status("There are no courses yet.");
      return;
    }
    const path = "v1/reports/queue?limit=50&course=" + encodeURIComponent(state.course);
    const answer = await api("GET", path);
    if (!answer.ok) {
      if (answer.status !== 401) status(problem(answer, "Could not load the queue."), true);
      return;
    }
    const selected = keepSelection ? state.items[state.index] : undefined;
    state.items = answer.data.items;
    state.nextCursor = answer.data.next_cursor;
    const kept = selected ? state.items.findIndex((i) => i.report_id === selected.report_id) : -1;
    state.index = Math.max(0, kept);
    showOpenCount(state.course, answer.data.open_reports);
    $("scorer").textContent = answer.data.scorer.note;
    render();
  }

  function problem(answer, fallback) {
    return (answer.data && answer.data.detail) || fallback;
  }

  function render() {
    const list = $("items");
    list.replaceChildren();
    state.items.forEach((item, position) => {
      // The number is the entry's own text, not a list marker the scroll box clips at 10+.
      const entry = document.createElement("li");
      const rank = document.createElement("span");
      rank.className = "rank";
      rank.textContent = String(position + 1);
      entry.append(rank, document.createTextNode(item.answer));
      entry.title = "score " + item.score.toFixed(3);
      if (position === state.index) entry.classList.add("selected");
      entry.addEventListener("click", () => { state.index = position; render(); });
      list.append(entry);
    });
    const item = state.items[state.index];
    $("empty").hidden = Boolean(item);
    $("detail").hidden = !item;
    if (!item) return;
    $("prompt").textContent = item.prompt;
    $("answer").textContent = item.answer;
    $("meta").textContent =
      "· reported " + item.times_reported + "× · score " + item.score.toFixed(3);
    $("nearest").textContent = item.nearest_accepted || "—";
    const diff = $("diff");
    diff.replaceChildren();
    for (const segment of item.diff) {
      const tag = segment.op === "extra" ? "ins" : segment.op === "missing" ? "del" : "span";
      const node = document.createElement(tag);
      node.textContent = segment.text;
      node.className = segment.op;
      diff.append(node, document.createTextNode(" "));
    }
    const selected = list.children[state.index];
    if (selected && selected.scrollIntoView) selected.scrollIntoView({ block: "nearest" });
  }

  async function decide(accept) {
    const item = state.items[state.index];
    if (!item || state.busy) return;
    state.busy = true;
    try {
      const answer = await api("POST", "v1/reports/" + encodeURIComponent(item.report_id) +
        "/decision", { accept: accept });
      if (answer.ok) {
        status((accept ? "Accepted: " : "Rejected: ") + item.answer);
      } else if (answer.status === 409) {
        status("Someone else already decided that report.", true);
      } else {
        status(problem(answer, "The decision was not saved."), true);
        return;
      }
      state.items.splice(state.index, 1);
      if (state.index >= state.items.length) state.index = Math.max(0, state.items.length - 1);
      if (state.items.length === 0 || accept) {
        // Accepting rescored the prompt's other reports: fetch the new order.
        await loadQueue();
      } else {
        render();
      }
      await loadCourses();
    } finally {
      state.busy = false;
    }
  }

  function move(step) {
    if (state.items.length === 0) return;
    state.index = Math.min(state.items.length - 1, Math.max(0, state.index + step));
    render();
  }

  async function start() {
    showLoggedIn(true);
    if (await loadCourses()) await loadQueue();
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("login").addEventListener("submit", async (event) => {
      event.preventDefault();
      const key = $("key").value.trim();
      if (!key) return;
      localStorage.setItem(KEY, key);
      $("key").value = "";
      status("");
      await start();
    });
    $("logout").addEventListener("click", () => signOut());
    $("course").addEventListener("change", async (event) => {
      state.course = event.target.value;
      localStorage.setItem(COURSE, state.course);
      await loadQueue();
    });
    $("accept").addEventListener("click", () => decide(true));
    $("reject").addEventListener("click", () => decide(false));
    document.addEventListener("keydown", (event) => {
      if ($("console").hidden || event.ctrlKey || event.metaKey || event.altKey) return;
      const target = event.target;
      if (target && (target.tagName === "INPUT" || target.tagName === "SELECT")) return;
      const actions = {
        a: () => decide(true), r: () => decide(false),
        j: () => move(1), ArrowDown: () => move(1),
        k: () => move(-1), ArrowUp: () => move(-1),
      };
      const action = actions[event.key];
      if (action) {
        event.preventDefault();
        action();
      }
    });
    // Signing in or out in another tab of this site does the same here.
    window.addEventListener("storage", (event) => {
      if (event.key !== KEY) return;
      if (event.newValue === null) signOut();
      else if ($("console").hidden) start();
    });
    document.addEventListener("visibilitychange", refresh);
    setInterval(refresh, REFRESH_MS);
    if (localStorage.getItem(KEY)) start();
  });
})();
