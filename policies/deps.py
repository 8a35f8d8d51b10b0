"""Dependencies on the policy in force, as ``Annotated`` aliases for every domain's routes.

The dependency only reads ``app.state``, so it is ``async``: FastAPI runs a plain ``def``
dependency in the thread pool, a hop per request that costs more than the lookup itself.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from policies.policy import Policy


async def get_policy(request: Request) -> Policy:
    policy: Policy = request.app.state.policy
    return policy


PolicyDep = Annotated[Policy, Depends(get_policy)]
