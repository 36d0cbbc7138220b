#!/usr/bin/env python3
"""Checks a Perfetto trace written by parkscope against the official schema.

Decodes FILE with the generated protos the `perfetto` PyPI package ships (perfetto_trace_pb2,
the full official TracePacket, not parkscope's subset) and checks:
  - nothing in it is unknown to the official schema (a field number or wire type parkscope got
    wrong would decode as an unknown field);
  - a ClockSnapshot maps the packets' clock before the first timestamped packet;
  - every packet is on one trusted packet sequence; the first clears the incremental state, and
    every packet that uses interned data says it needs it; every interned id is defined before use;
  - every track is declared (TrackDescriptor) before a packet uses it, parents before children;
  - no slice gives an arg twice; slice begins and ends balance on every track and never overlap (in timestamp order, as Perfetto sorts them);
  - thread descriptors carry --pid, and every tid of --tids has a thread track.
Prints the slices (track, tid, name, begin, end, args) as JSON on stdout; exits 1 with the
reasons on stderr when a check fails.

Run with the venv `cargo xtask setup` makes: ~/.cache/parkscope/perfetto-venv/bin/python3.
"""

import argparse
import json
import sys

from google.protobuf.unknown_fields import UnknownFieldSet
from perfetto.protos.perfetto.trace import perfetto_trace_pb2 as pb

SEQ_INCREMENTAL_STATE_CLEARED = 1
SEQ_NEEDS_INCREMENTAL_STATE = 2


def unknown_fields(msg, path, out):
    """Appends the paths of fields the official schema does not know, recursively."""
    if len(UnknownFieldSet(msg)):
        out.append(path)
    for field, value in msg.ListFields():
        if field.message_type is None:
            continue
        repeated = field.is_repeated if hasattr(field, "is_repeated") else field.label == field.LABEL_REPEATED
        values = value if repeated else [value]
        for i, v in enumerate(values):
            unknown_fields(v, f"{path}.{field.name}[{i}]", out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("file")
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--tids", default="", help="comma-separated tids that must have thread tracks")
    a = ap.parse_args()

    trace = pb.Trace()
    with open(a.file, "rb") as f:
        trace.ParseFromString(f.read())
    errors = []
    unknown = []
    unknown_fields(trace, "trace", unknown)
    errors += [f"unknown to the official schema: {u}" for u in unknown[:10]]

    declared = {}  # uuid -> TrackDescriptor
    names, keys, categories = {}, {}, {}
    events = {}  # track -> [(ts, index, type, packet)]
    sequences = set()
    clock_snapshots = 0
    for i, p in enumerate(trace.packet):
        sequences.add(p.trusted_packet_sequence_id)
        if p.HasField("clock_snapshot"):
            clock_snapshots += 1
        elif p.HasField("timestamp") and p.HasField("timestamp_clock_id") and not clock_snapshots:
            errors.append(f"packet {i}: a time on clock {p.timestamp_clock_id} before any ClockSnapshot")
        cleared = bool(p.sequence_flags & SEQ_INCREMENTAL_STATE_CLEARED)
        if cleared != (i == 0):
            errors.append(f"packet {i}: SEQ_INCREMENTAL_STATE_CLEARED is {cleared}")
        if p.HasField("interned_data"):
            names.update({n.iid: n.name for n in p.interned_data.event_names})
            keys.update({n.iid: n.name for n in p.interned_data.debug_annotation_names})
            categories.update({n.iid: n.name for n in p.interned_data.event_categories})
        if p.HasField("track_descriptor"):
            d = p.track_descriptor
            if d.HasField("parent_uuid") and d.parent_uuid not in declared:
                errors.append(f"packet {i}: track {d.uuid} declared before its parent {d.parent_uuid}")
            if d.HasField("thread") and d.thread.pid != a.pid:
                errors.append(f"packet {i}: thread {d.thread.tid} has pid {d.thread.pid}, not {a.pid}")
            declared[d.uuid] = d
        if p.HasField("track_event"):
            e = p.track_event
            if e.track_uuid not in declared:
                errors.append(f"packet {i}: track {e.track_uuid} used before it is declared")
            uses_interning = e.HasField("name_iid") or len(e.category_iids) > 0 or any(
                d.HasField("name_iid") for d in e.debug_annotations
            )
            if uses_interning and not p.sequence_flags & SEQ_NEEDS_INCREMENTAL_STATE:
                errors.append(f"packet {i}: uses interned data without SEQ_NEEDS_INCREMENTAL_STATE")
            if e.HasField("name_iid") and e.name_iid not in names:
                errors.append(f"packet {i}: event name iid {e.name_iid} not interned before")
            for c in e.category_iids:
                if c not in categories:
                    errors.append(f"packet {i}: category iid {c} not interned before")
            for d in e.debug_annotations:
                if d.HasField("name_iid") and d.name_iid not in keys:
                    errors.append(f"packet {i}: annotation name iid {d.name_iid} not interned before")
            if not p.HasField("timestamp"):
                errors.append(f"packet {i}: a track event without a timestamp")
            events.setdefault(e.track_uuid, []).append((p.timestamp, i, e.type, p))
    if len(sequences) != 1 or 0 in sequences:
        errors.append(f"packets on sequences {sorted(sequences)}, expected one")

    tid_of = {u: d.thread.tid for u, d in declared.items() if d.HasField("thread")}
    for tid in filter(None, a.tids.split(",")):
        if int(tid) not in tid_of.values():
            errors.append(f"tid {tid} has no thread track")

    slices = []
    for track, evs in events.items():
        stack = []
        for ts, i, typ, p in sorted(evs, key=lambda x: (x[0], x[1])):
            e = p.track_event
            if typ == pb.TrackEvent.TYPE_SLICE_BEGIN:
                if stack:
                    errors.append(f"track {track}: slices overlap at {ts} (parkscope never nests them)")
                args = {}
                for d in e.debug_annotations:
                    value = d.string_value if d.HasField("string_value") else d.int_value
                    key = keys.get(d.name_iid, d.name)
                    if key in args:
                        errors.append(f"packet {i}: arg {key} given twice")
                    args[key] = value
                stack.append({"track": track, "tid": tid_of.get(track), "name": names.get(e.name_iid, e.name),
                              "begin": ts, "args": args})
            elif typ == pb.TrackEvent.TYPE_SLICE_END:
                if not stack:
                    errors.append(f"track {track}: an end at {ts} without a begin")
                    continue
                s = stack.pop()
                s["end"] = ts
                slices.append(s)
        if stack:
            errors.append(f"track {track}: {len(stack)} begins without an end")

    if errors:
        print("\n".join(errors), file=sys.stderr)
        return 1
    json.dump({"packets": len(trace.packet), "tracks": len(declared), "slices": slices}, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
