"""`chargectl replay`: whole days of the simulator and the real controller on a virtual clock.

`scenario` (with `scenario_types`, `scenario_check`, `scenario_fault_check`,
`scenario_faults`) reads and checks scenario files; `scenario_timeline` expands one into its
seeded day; `policies` holds the peer policies; `wire` the in-memory Modbus line
(docs/replay.md, docs/replay-policies.md).
"""
