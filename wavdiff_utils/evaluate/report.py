"""What an evaluation found: the headline table, one row per generated sample, the JSON record.

The headline always has a FAD row and a KAD row, each naming the embedding it used (the
weights-free fallback is named as such, never as FAD on MuQ).  ``evaluation.json`` holds the
headline, every sample's numbers, the data behind the figures (histograms of per-sample
distances, worst and best samples, nearest-neighbour pairs), the decode report and the settings.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..paths import atomic_path, display_path
from .collect import SideEmbeddings
from .scores import OUTLIER_PERCENTILE, Scores

__all__ = ["Evaluation", "JSON_NAME", "FORMAT"]

#: The record an evaluation writes in its output folder.
JSON_NAME = "evaluation.json"
#: Version of the JSON layout.
FORMAT = 1


def _num(x, digits: int = 4):
    """A float rounded for JSON, None for NaN/inf/None."""
    if x is None:
        return None
    x = float(x)
    return round(x, digits) if math.isfinite(x) else None


def _fmt(x, digits: int = 3) -> str:
    return "n/a" if x is None or not math.isfinite(float(x)) else f"{float(x):.{digits}g}"


@dataclass
class Evaluation:
    """The result of :func:`wavdiff_utils.evaluate.evaluate_sets`.

    In a notebook it shows as the headline table; :meth:`sample_table` has one row per
    generated sample; :meth:`to_dict` is what ``evaluation.json`` holds.
    """

    generated: Path
    reference: Path
    output: Path
    embedding: str
    embedding_label: str
    scores: Scores
    gen: SideEmbeddings
    ref: SideEmbeddings
    settings: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)
    json_path: Path | None = None

    # ------------------------------------------------------------------ per sample

    def decode_of(self, name: str):
        """The generated sample's ``DecodeResult`` (images only), or None."""
        return self.gen.decode_results.get(name)

    def sample_rows(self) -> list[dict]:
        """:meth:`sample_table`'s rows as dicts (JSON-ready)."""
        sc, ref_names = self.scores, self.ref.names
        rows = []
        for i, s in enumerate(self.gen.samples):
            dec = self.decode_of(s.name)
            tile = dec.tiles[0] if dec is not None and dec.tiles else None
            row = {"sample": s.name, "distance": _num(sc.distances[i]),
                   "outlier": bool(sc.outliers[i]),
                   "nearest (cosine)": ref_names[sc.cosine.index[i]],
                   "cosine": _num(sc.cosine.value[i]),
                   "nearest (magnitude)": ref_names[sc.magnitude.index[i]] if sc.magnitude else None,
                   "magnitude corr": _num(sc.magnitude.value[i]) if sc.magnitude else None,
                   "memorized": bool(sc.memorized[i]),
                   "text-audio": _num(sc.text[i]) if sc.text is not None else None,
                   "SC dB": _num(tile.sc_db, 2) if tile is not None else None,
                   "coherence dB": _num(tile.coherence_db, 2) if tile is not None and tile.coherence_db is not None else None,
                   "phase": tile.method if tile is not None else None,
                   "peak dBFS": _num(self.gen.peaks[i], 2), "caption": s.caption}
            rows.append(row)
        return rows

    def sample_table(self):
        """One row per generated sample: kernel distance to the reference (and whether it is an
        outlier), nearest reference sample by embedding cosine and by magnitude correlation,
        the memorization flag, text-audio score, the SC its decode reached, its peak."""
        import pandas as pd

        return pd.DataFrame(self.sample_rows())

    def ranked(self) -> list[int]:
        """Generated samples from the farthest from the reference to the nearest."""
        return [int(i) for i in np.argsort(-self.scores.distances, kind="stable")]

    # ------------------------------------------------------------------ headline

    def _headline_rows(self) -> list[dict]:
        sc, label = self.scores, self.embedding_label
        ci = lambda iv: f"{iv.low:.4g} - {iv.high:.4g}" if iv is not None else ""
        rows = [{"metric": "FAD", "value": _fmt(sc.fad, 4), "95% interval": ci(sc.fad_interval),
                 "embedding": label, "note": "Frechet distance of the window embeddings"},
                {"metric": "FAD-inf", "value": _fmt(sc.fad_inf.score, 4) if sc.fad_inf else "n/a",
                 "95% interval": "", "embedding": label,
                 "note": f"fit R^2 {sc.fad_inf.r2:.3f}" if sc.fad_inf else sc.fad_inf_note},
                {"metric": "KAD", "value": _fmt(sc.kad, 4), "95% interval": ci(sc.kad_interval),
                 "embedding": label, "note": f"kadtk's kernel, bandwidth {sc.bandwidth:.4g}, x100"}]
        if sc.text is not None:
            ref_text = np.nanmean(sc.reference_text) if sc.reference_text is not None else None
            rows.append({"metric": "text-audio similarity", "value": _fmt(np.nanmean(sc.text)),
                         "95% interval": "", "embedding": "MuQ-MuLan",
                         "note": f"reference vs its own captions: {_fmt(ref_text)}"})
        else:
            rows.append({"metric": "text-audio similarity", "value": "n/a", "95% interval": "",
                         "embedding": "MuQ-MuLan", "note": sc.text_note})
        rows += [{"metric": "outliers", "value": str(int(sc.outliers.sum())), "95% interval": "",
                  "embedding": label, "note": f"kernel distance above the reference's own "
                                              f"{OUTLIER_PERCENTILE:g}th percentile ({sc.outlier_threshold:.4g})"},
                 {"metric": "memorized", "value": str(int(sc.memorized.sum())), "95% interval": "",
                  "embedding": label, "note": f"nearest reference at or above {sc.threshold:g} "
                                              f"(cosine{'' if sc.magnitude else '; magnitude ' + sc.magnitude_note})"}]
        sc_db = self._decode_sc()
        if sc_db:
            rows.append({"metric": "decode SC dB", "value": f"{np.mean(sc_db):.1f}", "95% interval": "",
                         "embedding": "", "note": f"mean of the generated tiles; worst {max(sc_db):.1f}"})
        return rows

    def _decode_sc(self) -> list[float]:
        return [t.sc_db for r in self.gen.decode_results.values() for t in r.tiles
                if t.sc_db == t.sc_db]

    def headline(self):
        """The headline table: FAD, FAD-inf, KAD (each naming its embedding), text-audio,
        outliers, memorized, decode SC."""
        import pandas as pd

        return pd.DataFrame(self._headline_rows())

    def summary(self) -> str:
        """A few lines for a terminal."""
        sc = self.scores
        iv = lambda x: f" [{x.low:.4g}, {x.high:.4g}]" if x is not None else ""
        lines = [f"{self.gen.n} generated vs {self.ref.n} reference samples; embedding: "
                 f"{self.embedding_label}",
                 f"  FAD {sc.fad:.4g}{iv(sc.fad_interval)}   FAD-inf "
                 f"{f'{sc.fad_inf.score:.4g}' if sc.fad_inf else sc.fad_inf_note}",
                 f"  KAD {sc.kad:.4g}{iv(sc.kad_interval)}",
                 f"  outliers {int(sc.outliers.sum())}, memorized {int(sc.memorized.sum())}"]
        if sc.text is not None:
            lines.append(f"  text-audio {np.nanmean(sc.text):.3f}")
        lines += [f"  note: {n}" for n in self.notes]
        if self.json_path is not None:
            lines.append(f"  wrote {display_path(self.json_path)}")
        return "\n".join(lines)

    def summary_markdown(self) -> str:
        sc = self.scores
        lines = [f"- **{self.gen.n}** generated samples against **{self.ref.n}** reference samples, "
                 f"embedding: {self.embedding_label}",
                 f"- FAD **{sc.fad:.4g}**, KAD **{sc.kad:.4g}**; FAD-inf "
                 f"{f'{sc.fad_inf.score:.4g}' if sc.fad_inf else sc.fad_inf_note}",
                 f"- {int(sc.outliers.sum())} outlier(s), {int(sc.memorized.sum())} possibly memorized"]
        lines += [f"- note: {n}" for n in self.notes]
        if self.json_path is not None:
            lines.append(f"- record: `{display_path(self.json_path)}`")
        return "\n".join(lines)

    def __repr__(self) -> str:
        """One line (the generated field-by-field form would print every embedding)."""
        sc = self.scores
        return (f"<Evaluation: {self.gen.n} generated vs {self.ref.n} reference samples, "
                f"{self.embedding}: FAD {sc.fad:.4g}, KAD {sc.kad:.4g}>")

    def _repr_html_(self) -> str:
        import html

        return (f"<p>{html.escape(self.summary().splitlines()[0])}</p>"
                + self.headline().to_html(index=False))

    # ------------------------------------------------------------------ JSON

    def figures(self, *, bins: int = 30, show: int = 4) -> dict:
        """The data behind the figures: histograms, worst and best samples, neighbour pairs."""
        sc = self.scores
        both = np.concatenate([sc.distances, sc.reference_distances])
        edges = np.histogram_bin_edges(both, bins=bins)
        order = self.ranked()
        pairs = [{"generated": self.gen.names[i], "reference": self.ref.names[sc.cosine.index[i]],
                  "cosine": _num(sc.cosine.value[i]),
                  **({"magnitude_reference": self.ref.names[sc.magnitude.index[i]],
                      "magnitude_corr": _num(sc.magnitude.value[i])} if sc.magnitude else {})}
                 for i in np.argsort(-sc.cosine.value, kind="stable")[:show]]
        return {"distance_histogram": {"edges": [_num(e) for e in edges],
                                       "generated": np.histogram(sc.distances, edges)[0].tolist(),
                                       "reference": np.histogram(sc.reference_distances, edges)[0].tolist()},
                "worst": [self.gen.names[i] for i in order[:show]],
                "best": [self.gen.names[i] for i in order[::-1][:show]],
                "nearest_pairs": pairs}

    def to_dict(self) -> dict:
        sc = self.scores
        interval = lambda iv: iv.to_dict() if iv is not None else None
        return {
            "format": FORMAT,
            "generated": display_path(self.generated), "reference": display_path(self.reference),
            "embedding": {"name": self.embedding, "label": self.embedding_label},
            "counts": {"generated": self.gen.n, "reference": self.ref.n,
                       "generated_windows": int(len(self.gen.windows)),
                       "reference_windows": int(len(self.ref.windows)),
                       "dropped_silent": {"generated": self.gen.dropped, "reference": self.ref.dropped},
                       "cached": {"generated": self.gen.cached, "reference": self.ref.cached}},
            "headline": self._headline_rows(),
            "metrics": {"fad": _num(sc.fad, 6), "fad_interval": interval(sc.fad_interval),
                        "fad_inf": sc.fad_inf.to_dict() if sc.fad_inf else None,
                        "fad_inf_note": sc.fad_inf_note,
                        "kad": _num(sc.kad, 6), "kad_interval": interval(sc.kad_interval),
                        "kad_bandwidth": _num(sc.bandwidth, 6),
                        "outlier_threshold": _num(sc.outlier_threshold, 6),
                        "memorization_threshold": sc.threshold,
                        "text_audio": _num(np.nanmean(sc.text)) if sc.text is not None else None,
                        "reference_text_audio": _num(np.nanmean(sc.reference_text))
                        if sc.reference_text is not None else None, "text_note": sc.text_note,
                        "magnitude_note": sc.magnitude_note},
            "reference_yardsticks": {
                "distance_percentiles": {p: _num(np.percentile(sc.reference_distances, p))
                                         for p in (5, 50, 95)},
                "nearest_cosine_percentiles": {p: _num(np.percentile(sc.cosine.reference, p))
                                               for p in (50, 95, 100)},
                **({"nearest_magnitude_percentiles": {p: _num(np.percentile(sc.magnitude.reference, p))
                                                      for p in (50, 95, 100)}} if sc.magnitude else {})},
            "samples": self.sample_rows(),
            "figures": self.figures(),
            "decode": self._decode_record(),
            "settings": self.settings, "timings": {k: _num(v, 3) for k, v in self.timings.items()},
            "notes": list(self.notes)}

    def _decode_record(self) -> dict | None:
        batch = self.gen.decode
        if batch is None:
            return None
        return {"files": [{"sample": n, "output": display_path(r.output, self.output),
                           "phase": r.methods() or r.phase, "peak_dbfs": _num(r.peak_dbfs, 2),
                           "clipped": r.clipped, "warnings": list(r.warnings),
                           "tiles": [{k: (_num(v) if isinstance(v, float) else v)
                                      for k, v in t.to_dict().items()} for t in r.tiles]}
                          for n, r in self.gen.decode_results.items()],
                "failures": [{"path": display_path(p), "message": m} for p, m in batch.failures]}

    def write_json(self, path=None) -> Path:
        """Write :meth:`to_dict` to ``path`` (default ``<output>/evaluation.json``), atomically."""
        path = Path(path) if path is not None else self.output / JSON_NAME
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(self.to_dict(), indent=1, ensure_ascii=False) + "\n",
                           encoding="utf-8")
        self.json_path = path
        return path
