"""Writing a batch to a Redis Cluster: one apply.lua call per hash slot, then a check that
every master written to has passed the writes to a replica.

A script runs on one slot, and every key of a site shares the site's hash tag, so a batch
becomes one call per site, each with its own batch marker (the same batch id): a batch
retried after a failover, a `MOVED`/`ASK` or a `TRYAGAIN` during a resharding counts each
site once. A tail's positions (`extra`, keys tagged with the configured site) ride in the
call of the site whose slot they share, made last: when every count of the batch is that
site's (a tail of one virtual host), position and counts commit together, exactly once;
with several sites, a crash between the calls re-reads the lines whose position did not
commit (at least once).

A Redis Cluster replicates asynchronously: a master killed before its replica received a
write loses it once the replica is promoted, marker included. So a batch is done only when
each master it touched has a replica that acknowledged it (WAIT, after a write on the
same connection: replication is in order, so it covers the batch's scripts). A master
with no replica attached (one promoted after its master died, until that one is back) is
trusted as it is. Otherwise the batch stays pending and is sent again: the markers make
the second application a no-op where the first survived, and apply it where it was lost.
"""

from __future__ import annotations

import contextlib
import re
from typing import Any

import redis

from logcount.count.delta import Delta
from logcount.errors import RedisUnavailable
from logcount.sinks.connection import reason

REPLICA_WAIT_MS = 2000  # how long a master may take to pass a batch to one replica
MARKER_LONG = 7 * 86400  # batch.MARKER_TTL: a batch not confirmed may come back from a spool
MARKER_DONE = 60  # seconds a confirmed batch's markers are kept (redis-py's own retries)
_TAG = re.compile(r"\{([^}]*)\}")


def tag_of(name: str) -> str | None:
    """The hash tag of a key (`lc:{site}:pos:...` -> `site`): what decides its slot."""
    found = _TAG.search(name)
    return found.group(1) if found and found.group(1) else None


def calls_of(delta: Delta, extra: dict[str, str]) -> list[tuple[str, Delta, dict[str, str]]]:
    """(site, its part of `delta`, the extra values stored with it), in the order they
    must be sent: the calls that carry a tail's positions last. An extra value whose tag
    is no site of the delta gets a call of its own (its marker in that slot); one with no
    tag is left to `untagged`."""
    parts = delta.split_by_site()
    carried: dict[str, dict[str, str]] = {}
    for name, value in extra.items():
        tag = tag_of(name)
        if tag is not None:
            carried.setdefault(tag, {})[name] = value
    for tag in carried:
        parts.setdefault(tag, Delta())
    plain: list[tuple[str, Delta, dict[str, str]]] = [
        (site, parts[site], {}) for site in sorted(parts) if site not in carried
    ]
    return plain + [(site, parts[site], carried[site]) for site in sorted(carried)]


def run_scripts(client: Any, script: Any, calls: list[tuple[list[str], bytes]]) -> list[Any]:
    """Each (KEYS, payload) through apply.lua, in one pipeline: one round trip per node
    rather than one per site (a day of 2,000 sites spent its time waiting on sockets). A
    result is the script's reply or the error of that call; `MOVED` and `ASK` are
    followed by redis-py. A node that does not know the script (a replica promoted
    since) gets it, and the calls run again: the markers make that a no-op where done."""
    for _ in range(2):
        pipe = client.pipeline()
        for key_list, payload in calls:
            pipe.evalsha(script.sha, len(key_list), *key_list, payload)
        results: list[Any] = pipe.execute(raise_on_error=False)
        if not any(isinstance(r, redis.exceptions.NoScriptError) for r in results):
            break
        client.script_load(script.script)  # on every master
    return results


def untagged(extra: dict[str, str]) -> dict[str, str]:
    """Extra values of no site's slot: stored on their own, after the counts."""
    return {name: value for name, value in extra.items() if tag_of(name) is None}


def confirm_replicated(client: Any, markers: list[str]) -> None:
    """Wait until each master that holds one of `markers` has passed its writes to a
    replica; RedisUnavailable when one has a replica attached that did not acknowledge.

    Then the markers of a confirmed batch are let go within a minute: the batch is never
    sent again, and a cluster takes one marker per site and batch (2,000 sites over two
    hosts flushing every second kept millions for their 7 days)."""
    by_node: dict[str, tuple[Any, list[str]]] = {}
    for marker in markers:
        node = client.get_node_from_key(marker)
        by_node.setdefault(node.name, (node, []))[1].append(marker)
    try:
        for node, held in by_node.values():
            connection = node.redis_connection
            # WAIT on a master with no replica in sync would wait its whole timeout (a
            # replica's first full sync may take minutes): such a master is trusted.
            if not online_replicas(connection.info("replication")):
                continue
            pipe = connection.pipeline(transaction=False)
            # A write on this connection, after the batch's: WAIT counts replicas that
            # have everything up to it.
            pipe.set(held[-1], "1", ex=MARKER_LONG)
            pipe.execute_command("WAIT", 1, REPLICA_WAIT_MS)
            _, acked = pipe.execute()
            if int(acked) < 1:
                raise RedisUnavailable(
                    f"Redis node {node.name} did not pass a batch to a replica in "
                    f"{REPLICA_WAIT_MS} ms; keeping it and retrying"
                )
    except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
        raise RedisUnavailable(f"cannot reach Redis: {reason(exc)}") from None
    except redis.RedisError as exc:  # MOVED: the slot left the node since
        raise RedisUnavailable(f"Redis error: {reason(exc)}") from None
    # Only once every node confirmed (a batch sent again must find all its markers), and
    # the batch is done whatever happens now: a marker not shortened lives its 7 days.
    for node, held in by_node.values():
        with contextlib.suppress(redis.RedisError, OSError):
            pipe = node.redis_connection.pipeline(transaction=False)
            for marker in held:
                pipe.expire(marker, MARKER_DONE)
            pipe.execute()


def online_replicas(info: dict[str, Any]) -> int:
    """Replicas in sync with a master (INFO replication's slaveN entries, state online)."""
    return sum(
        1
        for name, value in info.items()
        if name.startswith("slave") and isinstance(value, dict) and value.get("state") == "online"
    )
