"""WeldSim HPC: simulation of ultrasonic metal welding horns and battery-tab welds.

Importing the package needs only numpy, scipy, h5py and pydantic; gmsh and dolfinx are
imported lazily by the modules that own them (geometry/, mesh.py, backends/fenicsx/).
"""

__version__ = "0.1.0"
