"""Physical-group names: defined once, shared by geometry builders, meshers and solvers.

Horns lie along +z: `input_face` at z = 0 (the large end, where the booster drives),
`output_face` at z = L (the weld face). Tab-weld stacks are built bottom-up along +z:
anvil, tab, foil stack, horn tip.
"""

# horn groups
HORN = "horn"                  # volume
INPUT_FACE = "input_face"      # surface at z = 0
OUTPUT_FACE = "output_face"    # surface at z = L (weld face)
LATERAL = "lateral"            # every other horn surface

# tab-weld stack groups
ANVIL = "anvil"
TAB = "tab"
FOIL_STACK = "foil_stack"      # the homogenised foil layer
HORN_TIP = "horn_tip"
WELD_INTERFACE = "weld_interface"   # foils <-> tab
HORN_CONTACT = "horn_contact"       # horn tip <-> top foil
ANVIL_CONTACT = "anvil_contact"     # anvil <-> tab
ANVIL_BASE = "anvil_base"           # bottom face of the anvil (usually fixed)
HORN_TOP = "horn_top"               # top face of the horn tip (where it is driven)
OUTER = "outer"                     # every other stack surface


def foil_name(i: int) -> str:
    """Name of the i-th individual foil volume (1-based): foil_01, foil_02, ..."""
    return f"foil_{i:02d}"


# gmsh/meshio dimension of a group
VOLUME, SURFACE = 3, 2
