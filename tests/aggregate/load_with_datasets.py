"""Load a downloaded release with the ``datasets`` of the interpreter running this script and
print one JSON line per row: what the test compares with what was uploaded.

Run by ``tests/aggregate/test_dataset.py`` under other virtual environments than the suite's
(``make test`` builds them: ``datasets`` 4 with its audio extra, which decodes through torchcodec
and FFmpeg; ``datasets`` 3 under pandas 3), so it imports nothing of Chorus.
"""

from __future__ import annotations

import hashlib
import json
import sys

import datasets
import numpy as np
import pandas


def main(folder: str, cache_dir: str) -> None:
    loaded = datasets.load_dataset(folder, split="train", cache_dir=cache_dir)
    print(
        json.dumps(
            {
                "datasets": datasets.__version__,
                "pandas": pandas.__version__,
                "rows": loaded.num_rows,
                "audio_feature": type(loaded.features["audio"]).__name__,
            }
        )
    )
    for row in loaded:
        audio = row["audio"]
        if hasattr(audio, "get_all_samples"):  # datasets 4: a torchcodec decoder
            decoded = audio.get_all_samples()
            samples = decoded.data.numpy()[0]
            rate = decoded.sample_rate
        else:
            samples, rate = np.asarray(audio["array"]), audio["sampling_rate"]
        pcm = np.rint(np.asarray(samples, dtype=np.float64) * 32768.0).astype("<i2")
        print(
            json.dumps(
                {
                    "pcm_sha256": hashlib.sha256(pcm.tobytes()).hexdigest(),
                    "sampling_rate": int(rate),
                    **{
                        name: row[name]
                        for name in ("text", "language", "exercise_id", "duration_s", "sample_rate")
                    },
                }
            )
        )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
