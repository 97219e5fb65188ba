"""The paper's reported numbers as data (``paper.yaml``): one place, each value with its section or table."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import yaml

PAPER_FILE = Path(__file__).with_name("paper.yaml")


@dataclass(frozen=True)
class Reported:
    """A mean ± SD (in %) as the paper prints it."""

    mean: float
    sd: float

    def text(self) -> str:
        """'mean ± sd' as in the paper."""
        return f"{self.mean:.2f} ± {self.sd:g}"


@dataclass(frozen=True)
class PaperReference:
    """The numbers and claims of the paper this project compares with."""

    patients: int
    split: str
    training_slices: int
    kappa: float
    table1: dict[str, dict[str, Reported]]  # modality -> metric -> value
    table2: dict[tuple[str, str], Reported]  # (model label, ground-truth label) -> DSC
    claims: dict[str, str]
    ambiguities: list[str]
    sources: dict[str, str]
    effects: dict[str, float] = field(default_factory=dict)  # name -> first minus second, DSC points


def _cell(reference: str, table1: dict, table2: dict, effects: dict) -> float:
    """The paper's mean at ``"table1 <modality> <metric>"``, ``"table2 <model> <gt>"`` or ``"effect <name>"``."""
    kind, *keys = reference.split()
    if kind == "table1":
        return table1[keys[0]][keys[1]].mean
    if kind == "table2":
        return table2[(keys[0], keys[1])].mean
    if kind == "effect":
        return effects[keys[0]]
    raise ValueError(f"paper.yaml: unknown cell reference {reference!r}")


def _effects(raw: dict, table1: dict, table2: dict) -> dict[str, float]:
    """Each effect of ``paper.yaml`` as first minus second, in file order (an effect may use an earlier one)."""
    out: dict[str, float] = {}
    for name, entry in raw.items():
        first, second = (_cell(ref, table1, table2, out) for ref in entry["difference"])
        out[name] = round(first - second, 2)  # the paper prints two decimals: no float residue in the text
    return out


@cache
def load_paper(path: str | Path = PAPER_FILE) -> PaperReference:
    """Read ``paper.yaml``."""
    raw = yaml.safe_load(Path(path).read_text())
    cohort = raw["cohort"]
    table1 = {m: {k: Reported(*v) for k, v in row.items()} for m, row in raw["table1"]["rows"].items()}
    table2 = {(model, gt): Reported(*v) for model, row in raw["table2"]["cells"].items() for gt, v in row.items()}
    sources = {k: v["source"] for k, v in cohort.items()}
    sources.update(table1=raw["table1"]["source"], table2=raw["table2"]["source"])
    sources.update({f"effect {name}": entry["source"] for name, entry in raw.get("effects", {}).items()})
    return PaperReference(patients=cohort["patients"]["value"], split=cohort["split"]["value"],
                          training_slices=cohort["training_slices"]["value"], kappa=cohort["kappa"]["value"],
                          table1=table1, table2=table2, claims=dict(raw["claims"]),
                          ambiguities=list(raw["ambiguities"]), sources=sources,
                          effects=_effects(raw.get("effects", {}), table1, table2))
