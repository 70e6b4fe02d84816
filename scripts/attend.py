"""python scripts/attend.py ckpt=<checkpoint or run dir> text="...": attention maps (configs/attend.yaml)."""

from transformer.cli import attend_main

if __name__ == "__main__":
    attend_main()
