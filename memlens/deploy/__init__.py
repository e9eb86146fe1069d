"""Deployment with lerobot's inference engines: memory that advances as in training.

* `rtc.MemoryRTCInferenceEngine`: lerobot's Real-Time Chunking engine (`lerobot.rollout.inference`).
* `server.MemoryPolicyServer` / `memlens serve`: lerobot's async policy server.
* `client.MemoryRobotClient` / `memlens robot-client`: lerobot's async robot client.

Synchronous `select_action` (lerobot-eval, `SyncInferenceEngine`) needs nothing: each call is one
executed frame. See docs/deployment.md.
"""
