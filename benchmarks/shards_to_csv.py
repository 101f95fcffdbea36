"""Kept for the scripts that call it: `rils data shards-to-csv PATTERN OUT.csv` does the work.
Usage: shards_to_csv.py 'data/openclipart/val/{00000..00000}.tar' data/openclipart/val.csv"""
import sys

from rils.cli import main

if __name__ == "__main__":
    sys.exit(main(["data", "shards-to-csv", *sys.argv[1:]]))
