"""AgentGym environments: offline simulators, the real BabyAI levels, and an HTTP client for real servers."""
