"""Lifted JAX transforms: JAX transforms and control flow inside a transform."""
