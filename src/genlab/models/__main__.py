"""`python -m genlab.models --table [--data NAME]`: every preset with its parameters and FLOPs, at the input shape and
class count of a data set (CIFAR-10's 3x32x32 and 10 classes without --data)."""
import argparse
import sys

from genlab.models.presets import preset_table

parser = argparse.ArgumentParser(prog="python -m genlab.models", description=__doc__)
parser.add_argument("--table", action="store_true", help="print the Markdown table of every preset (the README's)")
parser.add_argument("--data", metavar="NAME", help="the data set whose shape and classes to use (data=NAME of train.py)")
parser.add_argument("--data-dir", default="data", help="where the data set is, for image folders (default: data)")
args = parser.parse_args()
if not args.table:
    parser.print_help()
    sys.exit(0)
if args.data is None:
    print(preset_table())
    sys.exit(0)

from genlab.data.catalog import dataset_info  # noqa: E402  (only with --data: the readers import more)
from genlab.errors import ConfigError, DataError  # noqa: E402

try:
    info = dataset_info(args.data, args.data_dir)
except (ConfigError, DataError) as err:
    print(f"error: {err}", file=sys.stderr)
    sys.exit(2)
print(f"{args.data}: {info.channels}x{info.image_size}x{info.image_size} inputs, {info.num_classes} classes\n")
print(preset_table(info.channels, info.image_size, info.num_classes))
