"""A copy of a run with a fresh discriminator, to refine its directions against a new critic.

    python experiments/fresh_discriminator.py RUN OUT [--init pretrained|random]

``hspace discover --init-from RUN`` starts from all three of a run's parts. This writes OUT, a run
folder with RUN's shift block and reconstructor and a discriminator as a new run would start it
(from the DM's encoder weights, or random), for ``--init-from OUT``. Used in docs/discovery.md,
section 2 ("Refining").
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from hspace.artifacts import save_tensors
from hspace.run import check_run_folder, load_run
from hspace.train import DiscoveryModules


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("run")
    ap.add_argument("out")
    ap.add_argument("--init", choices=["pretrained", "random"], default="pretrained")
    args = ap.parse_args()
    folder, out = check_run_folder(args.run), Path(args.out)
    out.mkdir(parents=True, exist_ok=False)
    for part in ("shift_block", "reconstructor"):
        shutil.copy(folder / f"{part}.safetensors", out / f"{part}.safetensors")
    run = load_run(folder)
    fresh = DiscoveryModules(run.model, run.config.replace(discriminator_init=args.init)).discriminator
    meta = json.loads((folder / "config.json").read_text())  # what save_parts gives every part
    meta["config"]["discriminator_init"] = args.init
    save_tensors(out / "discriminator.safetensors", fresh.state_dict(), "hspace-discriminator", **meta)
    (out / "config.json").write_text(json.dumps(meta, indent=2))
    print(f"{out}: {folder}'s shift block and reconstructor, a {args.init} discriminator")


if __name__ == "__main__":
    main()
