"""The dolfinx/PETSc backend (MPI). The only package that imports dolfinx, and lazily:
importing this package (or its modules) does not import dolfinx, so registries and the
CLI can list it where dolfinx is absent."""
