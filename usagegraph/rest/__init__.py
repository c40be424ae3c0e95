"""The REST shims: thin translations of the five documented APIs onto the resolvers."""
