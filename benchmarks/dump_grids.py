"""Dump every grid of the named profiles: item ids and labels, pool needs, distillation ids.

Two dumps compare byte for byte: a refactor that keeps them identical keeps every run id, label and
pool need of every profile. ``python benchmarks/dump_grids.py smoke cpu paper > grids.json``.
"""

from __future__ import annotations

import json
import sys

from ptmdd_helpers import study
from ptmdd_helpers.specs import spec_id


def grid_dump(profile: str) -> dict:
    """Each notebook's evaluations (id, subject id, labels), pool needs and distillation ids."""
    params = study.load_profile(profile)
    out = {}
    for notebook in study.NOTEBOOKS:
        grid = study.build_grid(notebook, params[notebook])
        out[notebook] = {
            "items": [[spec_id(item.spec), spec_id(item.spec.subject),
                       [[key, repr(value)] for key, value in item.labels]] for item in grid.items],
            "needs": [[repr(need.member), need.epoch] for need in grid.needs],
            "members": [repr(member) for member in grid.members],
            "initial": [repr(member) for member in grid.initial],
            "distillations": [spec_id(spec) for spec in grid.distillations],
        }
    return out


def main(profiles: list[str]) -> None:
    """Print the dump of ``profiles`` (default: smoke, cpu, paper) as sorted JSON."""
    dump = {profile: grid_dump(profile) for profile in profiles or ["smoke", "cpu", "paper"]}
    print(json.dumps(dump, indent=1, sort_keys=True))


if __name__ == "__main__":
    main(sys.argv[1:])
