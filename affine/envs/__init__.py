"""Environments: Affine single-turn tasks and AgentGym multi-turn envs, behind one registry (base.make)."""
