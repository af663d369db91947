"""The served process: the CPU gate, the HTTP protocol, the event loop, probes and limits.

How much CPU work the gateway lets onto its loop at once (`cpu_gate`), how a request head is
bounded (`http_protocol`), the loop itself (`event_loop`), the probe port (`probe_listener`),
garbage-collection timing (`gc_tuning`), the file-descriptor budget (`fd_limit`) and the
header fields requests share (`header_fields`).
"""
