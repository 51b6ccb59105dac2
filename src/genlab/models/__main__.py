"""`python -m genlab.models --table`: every preset with its parameters and FLOPs (3x32x32, 10 classes)."""
import argparse

from genlab.models.presets import preset_table

parser = argparse.ArgumentParser(prog="python -m genlab.models", description=__doc__)
parser.add_argument("--table", action="store_true", help="print the Markdown table of every preset (the README's)")
args = parser.parse_args()
if args.table:
    print(preset_table())
else:
    parser.print_help()
