"""``python -m wavdiff_utils.evaluate GENERATED REFERENCE --output DIR``: the evaluation for scripts.

Prints the headline and writes ``DIR/evaluation.json`` (the headline, every sample's numbers,
the data behind the figures, the decode report).  Errors are one line (exit 2); Ctrl-C exits 130.
"""
from __future__ import annotations

import argparse
import sys

from ..errors import WavdiffError, one_line

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    from .collect import SILENT_MODES
    from .embeddings import EMBEDDINGS

    ap = argparse.ArgumentParser(
        prog="python -m wavdiff_utils.evaluate",
        description="How close a set of generated music is to a reference: FAD, FAD-inf, KAD, "
                    "outliers, memorization, text-audio similarity. Writes OUTPUT/evaluation.json.")
    ap.add_argument("generated", help="folder of images (ours or any generator's), a dataset, "
                                      "a folder of audio, or one file")
    ap.add_argument("reference", help="a dataset made by the pipeline, a folder of tiles, or audio")
    ap.add_argument("-o", "--output", required=True, help="folder for evaluation.json, decoded/, cache/")
    ap.add_argument("--embedding", choices=EMBEDDINGS, default="auto",
                    help="auto: MuQ when its weights are found, else the weights-free fallback")
    ap.add_argument("--model", default=None, help="MuQ-MuLan hub id or folder "
                                                  "(default OpenMuQ/MuQ-MuLan-large or $WAVDIFF_MUQ_MODEL)")
    ap.add_argument("--device", default="auto", help="auto, cpu, cuda[:N], mps")
    ap.add_argument("--split", default=None, help="rows of a reference dataset, e.g. validation")
    ap.add_argument("--phase", default="auto", help="decode phase for images (default auto)")
    ap.add_argument("--n-iter", type=int, default=64, help="most phase iterations per tile")
    ap.add_argument("--size", type=int, default=1024, help="tile size assumed for images without metadata")
    ap.add_argument("--sample-rate", type=int, default=44100,
                    help="sample rate assumed for images without metadata")
    ap.add_argument("--clip-seconds", type=float, default=None, help="clip length for audio "
                                                                     "(default the tile length)")
    ap.add_argument("--silent", choices=SILENT_MODES, default="error",
                    help="a silent generated clip: stop (error) or leave it out (drop); "
                         "silent reference tiles are always left out")
    ap.add_argument("--bootstrap", type=int, default=100, help="resamples for the 95%% intervals")
    ap.add_argument("--threshold", type=float, default=0.99,
                    help="nearest-reference similarity flagged as possibly memorized")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=8, help="clips per MuQ forward pass")
    ap.add_argument("--cache", default=None, help="embedding cache folder (default OUTPUT/cache); "
                                                   "point several evaluations at one to reuse it")
    ap.add_argument("--no-cache", action="store_true", help="neither read nor write embedding caches")
    ap.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    return ap


def main(argv=None) -> int:
    """Run the evaluation the arguments describe; 0 on success, 2 on an error (one line)."""
    args = build_parser().parse_args(argv)
    try:
        from ..codec.params import CodecParams
        from .run import evaluate_sets

        result = evaluate_sets(args.generated, args.reference, args.output, embedding=args.embedding,
                               model=args.model, device=args.device, split=args.split,
                               params=CodecParams(size=args.size, sample_rate=args.sample_rate),
                               phase=args.phase, n_iter=args.n_iter, clip_seconds=args.clip_seconds,
                               silent=args.silent, bootstrap=args.bootstrap, threshold=args.threshold,
                               seed=args.seed, batch_size=args.batch_size,
                               cache_dir=False if args.no_cache else args.cache,
                               progress=not args.quiet)
    except WavdiffError as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: nothing was written", file=sys.stderr)
        return 130
    print(result.summary())
    return 0
