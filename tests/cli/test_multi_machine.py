"""Data-parallel training across "machines": two network namespaces joined by veth
(netns_cluster.py), OpenMPI over TCP between them, one rank in each. The job must give
the single process's bits (1 process, grad_accum 2), the ranks must really sit in
different namespaces, and the communication time is reported."""
import json
import os
import shutil
import statistics
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from motcli import MOT, Workdir, metrics, run  # noqa: E402
from netns_cluster import Cluster  # noqa: E402

ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
ENV["LSAN_OPTIONS"] = ":".join(x for x in [os.environ.get("LSAN_OPTIONS", ""), "suppressions=" + os.path.join(
    os.path.dirname(__file__), "lsan-openmpi.supp")] if x)
ENV["ASAN_OPTIONS"] = ":".join(x for x in [os.environ.get("ASAN_OPTIONS", ""), "fast_unwind_on_malloc=0"] if x)
ENV["OMPI_MCA_mca_base_component_disable_dlclose"] = "1"


def why_not():
    if shutil.which("mpirun") is None:
        return "mpirun not installed (scripts/deps installs openmpi-bin)"
    if shutil.which("ip") is None:
        return "iproute2 not installed"
    if os.geteuid() != 0:
        return "network namespaces need root"
    return None


@unittest.skipIf(why_not(), why_not() or "")
class MultiMachine(unittest.TestCase):
    def test_two_hosts_over_tcp(self):
        w = Workdir()
        cfg, data = w.tiny_data()
        with open(cfg) as f:
            cfg = w.file("mm.toml", f.read().replace("threads = 2", "threads = 1"))
        common = ["--config", cfg, "--data", data, "--steps", "20"]
        one = run(["train", *common, "--out", w.p("one"), "--set", "train.grad_accum=2"])
        self.assertEqual(one.returncode, 0, one.stderr)
        try:
            cluster = Cluster(2).__enter__()
        except RuntimeError as e:
            self.skipTest(str(e))
        try:
            # Each rank notes its network namespace before it becomes mot.
            probe = ["/bin/sh", "-c", f'readlink /proc/self/ns/net > {w.p("ns")}.$OMPI_COMM_WORLD_RANK; exec "$0" "$@"',
                     MOT, "train", *common, "--out", w.p("two")]
            r = cluster.mpirun(2, probe, ENV, timeout=300)
        finally:
            cluster.__exit__(None, None, None)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        with open(w.p("ns") + ".0") as f0, open(w.p("ns") + ".1") as f1:
            self.assertNotEqual(f0.read(), f1.read(), "both ranks ran in one network namespace")
        a, b = metrics(w.p("one")), metrics(w.p("two"))
        keys = ("step", "loss", "grad_norm", "tokens", "val_loss")
        self.assertEqual([[m.get(k) for k in keys] for m in a], [[m.get(k) for k in keys] for m in b])
        with open(w.p("one/model.safetensors"), "rb") as f, open(w.p("two/model.safetensors"), "rb") as g:
            self.assertEqual(f.read(), g.read())
        comm = [m["comm_ms"] for m in b[1:]]
        step = [m["ms"] for m in b[1:]]
        print(json.dumps({"tcp_veth_2_hosts": {"median_step_ms": statistics.median(step),
                                               "median_exposed_comm_ms": statistics.median(comm),
                                               "floats_sent_per_step": b[-1]["comm_floats_sent"]}}))
        w.tmp.cleanup()


if __name__ == "__main__":
    unittest.main()
