"""``python -m multidiff`` (and ``torchrun -m multidiff train ...``) run the command line."""
from multidiff.cli import main

main(prog_name="multidiff")
