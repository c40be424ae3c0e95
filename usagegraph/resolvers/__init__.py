"""The rules: who may see what, windows, buckets, fallbacks. Shared by GraphQL and REST."""
