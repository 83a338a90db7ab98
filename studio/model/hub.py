"""Loading from the Hugging Face hub, failing fast and clearly when it cannot be reached.

huggingface_hub retries a failed connection for ~25 s; a musician offline should hear why within
a few seconds. So: the local cache first, then a short TCP probe of the endpoint, then the real
download.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from urllib.parse import urlparse

PROBE_TIMEOUT_S = 3.0


class HubUnavailable(RuntimeError):
    """The hub cannot be reached (offline, DNS, firewall) and nothing is cached."""


def _offline_env() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")


def reachable(timeout: float = PROBE_TIMEOUT_S) -> tuple[bool, str]:
    """(ok, reason). A TCP connect to the hub endpoint, bounded by ``timeout`` seconds."""
    if _offline_env():
        return False, "HF_HUB_OFFLINE is set"
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    host, port = url.hostname or "huggingface.co", url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.setdefaulttimeout(timeout)
        socket.create_connection((host, port), timeout=timeout).close()
        return True, ""
    except OSError as e:
        return False, f"cannot connect to {host}:{port} ({e})"
    finally:
        socket.setdefaulttimeout(None)


def looks_like_repo_id(name: str) -> bool:
    parts = name.split("/")
    return len(parts) == 2 and all(parts) and not name.startswith((".", "/", "~"))


def download_file(repo_id: str, filename: str, what: str = "file") -> Path:
    """A file of a hub repo, from the cache if present, else downloaded (fast fail offline)."""
    from huggingface_hub import hf_hub_download

    if not looks_like_repo_id(repo_id):
        raise FileNotFoundError(f"{repo_id}: no such local path, and not a hub id (org/name)")
    try:
        return Path(hf_hub_download(repo_id, filename, local_files_only=True))
    except Exception:
        pass
    ok, why = reachable()
    if not ok:
        raise HubUnavailable(f"{what} {repo_id!r} is not cached and the hub is unreachable: {why}")
    return Path(hf_hub_download(repo_id, filename))


def snapshot(repo_id: str, what: str = "model") -> Path:
    """A local folder with a hub repo's config, weights (safetensors only) and generation config."""
    from huggingface_hub import snapshot_download

    if not looks_like_repo_id(repo_id):
        raise FileNotFoundError(f"{repo_id}: no such local folder, and not a hub id (org/name)")
    patterns = ["*.json", "*.safetensors", "*.txt", "*.md"]
    try:
        path = Path(snapshot_download(repo_id, allow_patterns=patterns, local_files_only=True))
        if (path / "config.json").is_file():
            return path
    except Exception:
        pass
    ok, why = reachable()
    if not ok:
        raise HubUnavailable(f"{what} {repo_id!r} is not cached and the hub is unreachable: {why}")
    return Path(snapshot_download(repo_id, allow_patterns=patterns))
