"""RL on the Affine envs: pure formulas (gae, losses), the critic (value_head), the loop (ppo), reward hooks."""
