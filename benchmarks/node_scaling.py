"""Scaling over Ray nodes: the same trials on a local cluster of 1 and then 2 worker nodes.

Each cluster is a real Ray head (no CPUs for trials) plus worker raylets of --cpus-per-node CPUs,
all on this machine (ray.cluster_utils.Cluster, what `ray start` makes). The same one-model study
(every trial the same network, full budget, no early stopping) joins it by address; the figure is
trial-epochs per minute of the Tuner's wall time, and where the trials ran. The node counts are
measured in alternation (1 2 1 2 ..., --pairs rounds) so a shared host's drift falls on each alike;
the speed-up is the median of the per-round ratios, with their spread.

    python benchmarks/node_scaling.py --data-dir ../shared/data/fashion-mnist [--nodes 1 2]
        [--trials 4] [--epochs 2] [--subset 12000] [--pairs 3]
"""

from __future__ import annotations

import argparse
import collections
import tempfile
from pathlib import Path

from common import alternate, epoch_rows, one_model_space, paired_ratios, run_study


def measure(nodes: int, args, workdir: Path) -> dict:
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    try:
        for _ in range(nodes):
            cluster.add_node(num_cpus=args.cpus_per_node)
        cluster.wait_for_nodes()
        space = one_model_space(workdir / "one.yaml", args.epochs, args.trials)
        name = f"nodes{nodes}"
        study = run_study(space, name, workdir, args.data_dir, "--address", cluster.address, "--scheduler", "none",
                          "--cpus-per-trial", str(args.cpus_per_node), "--subset", str(args.subset))
    finally:
        cluster.shutdown()
    rows = epoch_rows(workdir / name)
    per_node = collections.Counter(r["node_id"] for r in rows if r["training_iteration"] == 1)
    return {"nodes": nodes, "trial_epochs": len(rows), "wall_s": study["wall_s"],
            "per_min": 60 * len(rows) / study["wall_s"], "trials_per_node": sorted(per_node.values(), reverse=True)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--nodes", type=int, nargs="+", default=[1, 2], help="worker-node counts to measure")
    parser.add_argument("--cpus-per-node", type=int, default=1)
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--subset", type=int, default=12000, help="training images (default 12000)")
    parser.add_argument("--pairs", type=int, default=3,
                        help="rounds over the node counts (at least 3 to judge the spread)")
    args = parser.parse_args()
    print(f"{args.trials} trials x {args.epochs} epochs of the default model, {args.subset} images, "
          f"{args.cpus_per_node} CPU per worker node and per trial; {args.pairs} rounds")
    with tempfile.TemporaryDirectory() as workdir:
        runs = alternate({nodes: (lambda nodes=nodes: measure(nodes, args, Path(workdir))) for nodes in args.nodes},
                         args.pairs)
    print("worker nodes  trial-epochs  wall (s)  trial-epochs/min  trials per node")
    for nodes, results in runs.items():
        for r in results:
            print(f"{nodes:>12}  {r['trial_epochs']:>12}  {r['wall_s']:>8.1f}  {r['per_min']:>16.2f}  "
                  f"{r['trials_per_node']}")
    first, last = args.nodes[0], args.nodes[-1]
    if last != first:
        print(paired_ratios(f"speed-up, {last} nodes vs {first}", [r["per_min"] for r in runs[last]],
                            [r["per_min"] for r in runs[first]]))


if __name__ == "__main__":
    main()
