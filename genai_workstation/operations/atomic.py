"""Atomic file writes: a file on the host is the old one or the new one, never half of it.

pyinfra 3.10's ``files.put`` (and ``files.template``, which ends in the same upload) writes
the destination in place: over SSH without sudo the SFTP upload opens ``dest`` itself
(``SFTPClient.putfo(file, dest)``: truncated, then written); with sudo, and with the local
connector, the content is uploaded elsewhere and then ``cp``'d onto ``dest`` (truncated, then
written again); ``chown``/``chmod`` follow as separate commands. A connection cut in between
leaves a truncated file, or a new file with the wrong owner and mode (a secret readable by
others until the next run).

Here the content goes to ``.<name>.genai-tmp`` in the destination's own folder (same
filesystem, so ``mv`` is a ``rename(2)``), created empty with umask 077 first (so no one else
can read it while it fills); owner, mode and time are set on it, and only then is it renamed
over ``dest``. A run cut at any point leaves ``dest`` untouched or complete; the next write of
the same file replaces a leftover temp file.
"""

from __future__ import annotations

import posixpath

from pyinfra import host
from pyinfra.api import FileUploadCommand, QuoteString, StringCommand
from pyinfra.operations import files
from pyinfra.operations.util import files as file_utils

TEMP_SUFFIX = ".genai-tmp"


def temp_path(dest: str) -> str:
    """The temp file for ``dest``: hidden, in the same folder, one name per destination."""
    folder, name = posixpath.split(dest)
    return posixpath.join(folder, f".{name}{TEMP_SUFFIX}")


def upload(src, dest: str, *, mode: str, user=None, group=None, temp_dir: str | None = None,
           mtime: int | None = None):
    """Commands that replace ``dest`` by ``src`` atomically, owner and mode set before the
    rename. ``temp_dir``: where pyinfra stages the upload when it needs sudo (default /tmp:
    pass a private folder for secrets)."""
    tmp = temp_path(dest)
    yield StringCommand("rm", "-f", QuoteString(tmp), "&&", "(", "umask", "077", "&&", ":",
                        ">", QuoteString(tmp), ")")
    yield FileUploadCommand(src, tmp,
                            remote_temp_filename=host.get_temp_filename(tmp,
                                                                        temp_directory=temp_dir))
    if user or group:
        yield file_utils.chown(tmp, user, group)
    yield file_utils.chmod(tmp, mode)
    if mtime is not None:
        yield StringCommand("touch", "-m", "-d", f"@{int(mtime)}", QuoteString(tmp))
    yield StringCommand("mv", "-f", QuoteString(tmp), QuoteString(dest))


def put(src, dest: str, *, mode: str, user=None, group=None, mtime: int | None = None,
        **put_kwargs):
    """``files.put`` (its facts, its decision, its ``--diff``), but an upload it decides on is
    made atomic by :func:`upload`; owner/mode fixes alone stay in place (each is atomic)."""
    commands = list(files.put._inner(src=src, dest=dest, mode=mode, user=user, group=group,
                                     **put_kwargs))
    index = next((i for i, c in enumerate(commands) if isinstance(c, FileUploadCommand)), None)
    if index is None:
        yield from commands
        return
    yield from commands[:index]  # the parent folder, when files.put creates it
    yield from upload(commands[index].src, dest, mode=mode, user=user, group=group,
                      mtime=mtime)
