"""The detector's shape test on what it must accept and what it must reject, in one run.

    .venv/bin/python bench/bench_detector.py [--noise-images 10000] [--seed 5]

Prints, for exact renders of one bump (sigma 0.5, 0.7, 1, 1.5, 2 at 45 x 45 positions from 1 px
inside the frame to its middle, sub-pixel steps included; the threshold that lights >= 2 pixels for
each sigma, as tests/test_detect.py) the smallest R^2 and height of the fit of the dataset's bump at
the component's centroid (`detect.shape_fits`); for --noise-images images of pure N(0, 1) noise
clipped to [-1, 1], how many components they hold and the largest R^2 among them, overall and among
those at least half a bump high. The shape test's thresholds (detect.SHAPE_MIN_R2, SHAPE_MIN_HEIGHT)
must sit between the two. The last line printed is JSON.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import torch

from diffrep.config import DataConfig
from diffrep.data import render, render_for
from diffrep.evaluation.detect import SHAPE_MIN_HEIGHT, SHAPE_MIN_R2, shape_fits

EDGE = np.array([1.1, 1.2, 1.3, 1.4])
POSITIONS = np.concatenate([np.linspace(1.0, 31.0, 37), EDGE, 32 - EDGE])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--noise-images", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args(argv)
    result = {"min_r2": SHAPE_MIN_R2, "min_height": SHAPE_MIN_HEIGHT, "exact": {}}
    centres = np.array([(x, y) for x in POSITIONS for y in POSITIONS])
    for sigma in (0.5, 0.7, 1.0, 1.5, 2.0):
        data = DataConfig(sigma=sigma)
        threshold = 0.0 if sigma >= 0.85 else -0.5 if sigma >= 0.7 else -0.8
        r2, height = shape_fits(render(torch.tensor(centres), sigma_x=sigma, sigma_y=sigma),
                                lambda labels, d=data: render_for(labels, d), threshold=threshold)
        result["exact"][str(sigma)] = {"components": len(r2), "min_r2": float(r2.min()), "min_height": float(height.min())}
        print(f"exact renders, sigma {sigma}: {len(r2)} components, R^2 >= {r2.min():.3f}, height >= {height.min():.3f}")
    generator = torch.Generator().manual_seed(args.seed)
    data = DataConfig()
    r2s, heights = [], []
    for start in range(0, args.noise_images, 1000):
        noise = torch.randn((min(1000, args.noise_images - start), 1, 32, 32), generator=generator).clamp(-1, 1)
        r2, height = shape_fits(noise, lambda labels: render_for(labels, data))
        r2s.append(r2)
        heights.append(height)
    r2, height = np.concatenate(r2s), np.concatenate(heights)
    tall = r2[height >= SHAPE_MIN_HEIGHT]
    result["noise"] = {"images": args.noise_images, "components": len(r2), "max_r2": float(r2.max()),
                       "max_r2_at_half_height": float(tall.max()) if len(tall) else None,
                       "passing": int(((r2 >= SHAPE_MIN_R2) & (height >= SHAPE_MIN_HEIGHT)).sum())}
    print(f"pure noise: {args.noise_images} images, {len(r2)} components, R^2 <= {r2.max():.3f} "
          f"(<= {result['noise']['max_r2_at_half_height']:.3f} at height >= {SHAPE_MIN_HEIGHT}); "
          f"{result['noise']['passing']} pass the test")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
