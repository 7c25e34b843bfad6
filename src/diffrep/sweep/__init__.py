"""Sweeps: many runs over a grid of settings x seeds, on this machine or on a Ray cluster.

A sweep is a base config, a grid ({"section.key": [values]}) and a list of seeds. Every point
of the cartesian product grid x seeds is one ordinary run, so every other diffrep tool
(`score`, `probe`, `sample`, `train --resume`) works on each of them unchanged:

    SWEEP_DIR/
      sweep.json          {"version", "base": config dict, "grid", "seeds", "runs": [names]}
      runs/<name>/        one ordinary run directory per point (see diffrep/rundir.py)

grid.py expands a grid into named, validated configs; runner.py runs them (local process pool or
Ray) into a sweep directory; tables.py reads run directories back into one table and summarizes it.

    diffrep sweep:      run_sweep(sweep_dir, make_config(preset, overrides), parse_grid(grid_items),
                                  parse_seeds(seeds_text), backend=..., workers=..., address=...)
    resuming by folder: run_sweep(sweep_dir, *load_sweep(sweep_dir), ...)
    diffrep aggregate:  write_table(aggregate(dirs), out)
"""
