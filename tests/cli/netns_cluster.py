"""Two (or more) "machines" on this one: network namespaces joined by veth pairs to a
bridge-less point-to-point link each, with OpenMPI launching its daemons into them the
way it would over ssh (plm_rsh_agent is a script that runs the command inside the
namespace of the host it is given). Traffic between ranks crosses the veth links over
TCP, as between real hosts; nothing leaves the machine.

Used by tests/cli/test_multi_machine.py and bench/data_parallel. Needs root and iproute2."""
import os
import shutil
import subprocess
import tempfile


class Cluster:
    """`with Cluster(n) as c: c.mpirun([...])` — n namespaces, host i at 10.213.<i>.2,
    all reachable from namespace 0 (10.213.<i>.1) through its own veth link."""

    def __init__(self, n=2):
        self.n = n
        tag = f"{os.getpid() % 100000}"
        self.ns = [f"mot{tag}h{i}" for i in range(n)]
        self.tmp = tempfile.TemporaryDirectory(prefix="mot-netns-")
        self.hosts = []

    def ip(self, *args):
        subprocess.run(["ip", *args], check=True, capture_output=True, text=True)

    def __enter__(self):
        try:
            for ns in self.ns:
                self.ip("netns", "add", ns)
                self.ip("-n", ns, "link", "set", "lo", "up")
            # A star: namespace 0 is the hub with one veth link to every other host, so
            # every pair of hosts can talk (0 routes between its links).
            self.hosts = ["10.213.0.1"]
            for i in range(1, self.n):
                a, b = f"mva{os.getpid() % 10000}x{i}", f"mvb{os.getpid() % 10000}x{i}"
                self.ip("link", "add", a, "type", "veth", "peer", "name", b)
                self.ip("link", "set", a, "netns", self.ns[0])
                self.ip("link", "set", b, "netns", self.ns[i])
                self.ip("-n", self.ns[0], "addr", "add", f"10.213.{i}.1/24", "dev", a)
                self.ip("-n", self.ns[i], "addr", "add", f"10.213.{i}.2/24", "dev", b)
                self.ip("-n", self.ns[0], "link", "set", a, "up")
                self.ip("-n", self.ns[i], "link", "set", b, "up")
                self.ip("-n", self.ns[i], "route", "add", "10.213.0.0/16", "via", f"10.213.{i}.1")
                self.hosts.append(f"10.213.{i}.2")
            if self.n > 1:
                subprocess.run(["ip", "netns", "exec", self.ns[0], "sysctl", "-q", "-w", "net.ipv4.ip_forward=1"],
                               check=True, capture_output=True)
                # the hub's own address for host 0: its first link's
                self.hosts[0] = "10.213.1.1"
        except (subprocess.CalledProcessError, FileNotFoundError) as e:
            self.__exit__(None, None, None)
            raise RuntimeError(f"cannot make network namespaces: {getattr(e, 'stderr', e)}") from e
        agent = os.path.join(self.tmp.name, "nsexec")
        cases = "\n".join(f"  {h}) ns={ns} ;;" for h, ns in zip(self.hosts, self.ns))
        with open(agent, "w") as f:
            f.write(f"""#!/bin/sh
# mpirun's ssh: [options] HOST COMMAND... -> COMMAND inside HOST's network namespace
while [ $# -gt 0 ]; do case "$1" in -*) shift ;; *) break ;; esac; done
host=$1; shift
case "$host" in
{cases}
  *) echo "nsexec: unknown host $host" >&2; exit 1 ;;
esac
exec ip netns exec "$ns" /bin/sh -c "$*"
""")
        os.chmod(agent, 0o755)
        self.agent = agent
        self.hostfile = os.path.join(self.tmp.name, "hosts")
        with open(self.hostfile, "w") as f:
            f.write("".join(f"{h} slots=1\n" for h in self.hosts))
        return self

    def __exit__(self, *exc):
        for ns in self.ns:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        self.tmp.cleanup()

    def mpirun(self, np, argv, env, timeout=600):
        """mpirun inside host 0's namespace, one rank per host, TCP between them. Not bound
        to cores: every "host" would bind its rank to core 0 of the one real machine."""
        cmd = ["ip", "netns", "exec", self.ns[0], shutil.which("mpirun"), "-np", str(np), "--hostfile", self.hostfile,
               "--mca", "plm_rsh_agent", self.agent, "--mca", "btl", "self,tcp",
               "--mca", "btl_tcp_if_include", "10.213.0.0/16", "--mca", "oob_tcp_if_include", "10.213.0.0/16",
               "--map-by", "node", "--bind-to", "none", *argv]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
