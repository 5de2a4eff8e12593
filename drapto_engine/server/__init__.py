"""The engine service: the engine served over a Unix socket to this user's clients.

`drapto serve` runs it (service.serve); clients use `client.EngineClient`, usually
through `autostart.connect_or_start`. The wire format is in `protocol`.
"""
