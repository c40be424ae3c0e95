"""Who is calling: tokens, API keys, the per-request principal and the access rules."""
