"""Every number of the synthetic cohort that comes from the literature, with its source and what it sets.

A parameter is a range that each patient (or each read) draws from uniformly. The cohort's ``ASSUMPTIONS``
(written into ``cohort.json`` and shown in the report) are generated from this table, so the code and the
stated assumptions cannot drift apart. Values were fixed from the sources before any agreement or model
result was looked at; where no source was found the entry says so and gives the reasoning instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Any choice made by looking at generated cohorts (reader plausibility, visibility checks, timings) was made
# on this seed; the reported cohorts use the profiles' seeds (0).
DEVELOPMENT_SEED = 1000


@dataclass(frozen=True)
class Parameter:
    """A uniform range with its unit, what it sets in the phantom, and where the numbers come from."""

    low: float
    high: float
    unit: str
    sets: str
    source: str

    def draw(self, rng: np.random.Generator) -> float:
        """One uniform draw from the range."""
        return float(rng.uniform(self.low, self.high))

    @property
    def range(self) -> tuple[float, float]:
        """(low, high), as a style's range."""
        return self.low, self.high

    def describe(self) -> str:
        """One line for the cohort's ASSUMPTIONS."""
        value = f"{self.low:g}" if self.low == self.high else f"{self.low:g}-{self.high:g}"
        return f"{value} {self.unit}: {self.sets} [{self.source}]"


HOUNSFIELD = "standard CT attenuation of the tissue (Hounsfield scale: fat about -100, water 0, soft tissue 20-60 HU)"
WENTER_2017 = ("Wenter V et al. 2017, Eur J Nucl Med Mol Imaging 44:432-440, doi:10.1007/s00259-016-3528-9 "
               "(infected non-union SUVmax 6.4 +- 2.7, non-infected 3.0 +- 1.7)")

# --- CT: healthy tissue -------------------------------------------------------------------------------
CT = {
    "fat_hu": Parameter(-110, -90, "HU", "subcutaneous fat", HOUNSFIELD),
    "muscle_hu": Parameter(40, 55, "HU", "skeletal muscle", HOUNSFIELD),
    "skin_hu": Parameter(20, 40, "HU", "skin", HOUNSFIELD),
    "cortex_hu": Parameter(1200, 1800, "HU", "cortical bone", HOUNSFIELD),
    "marrow_hu": Parameter(-100, -50, "HU", "fatty (yellow) marrow of an adult long-bone diaphysis",
                           "marrow fat on the Hounsfield scale; no measured series found"),
    "cancellous_hu": Parameter(200, 320, "HU", "metaphyseal cancellous bone", HOUNSFIELD),
    "noise_sd_hu": Parameter(10, 18, "HU", "CT noise SD per voxel (spatially correlated, sharp kernel)",
                             "typical diagnostic CT of the limbs; assumption"),
}

# --- CT: signs of osteomyelitis ------------------------------------------------------------------------
CT_SIGNS = {
    "involved_marrow_hu": Parameter(10, 50, "HU", "infected marrow: fat replaced by exudate and granulation tissue, "
                                    "so the marrow reads as soft tissue against the fatty healthy side",
                                    "Hounsfield scale of the replacing tissue; no HU series found (Pineda C et al. "
                                    "2009 Semin Plast Surg 23:80, PMC2884903: CT shows erosion, sequestrum, gas)"),
    "lytic_hu": Parameter(20, 60, "HU", "destroyed cortex or trabeculae replaced by soft tissue", HOUNSFIELD),
    "periosteal_hu": Parameter(350, 800, "HU", "periosteal new bone (lamellar, less dense than cortex), 1.5-3 mm thick",
                               "immature woven/lamellar bone; assumption"),
    "sequestrum_hu": Parameter(1500, 1900, "HU", "sequestrum: dense necrotic bone in a lucent bed",
                               "Pineda 2009 (CT documents sequestra); density an assumption"),
    "abscess_hu": Parameter(0, 25, "HU", "abscess content (fluid)",
                            "Bydder GM, Kreel L 1980, J Comput Assist Tomogr 4:145 (fluid in vivo, errors up to 28.6 HU); "
                            "abscess 0-10 HU or slightly higher in diagnostic-imaging texts"),
    "stranding_hu": Parameter(40, 90, "HU", "rise of subcutaneous fat attenuation in fat stranding (oedema)",
                              "assumption: oedematous fat between fat and water; no HU series found"),
    "muscle_oedema_hu": Parameter(-10, -4, "HU", "change of oedematous muscle (not visible at CT noise)",
                                  "assumption: water content rises a few percent"),
    "gas_fraction": Parameter(0.15, 0.15, "of abscesses", "abscesses holding gas bubbles (-900 HU)",
                              "about half of abdominal abscesses hold gas (diagnostic-imaging texts); bone-infection "
                              "abscesses far less often: assumption 15 %"),
    "sinus_tract_fraction": Parameter(0.2, 0.2, "of patients", "a fluid-filled sinus tract from the focus to the skin",
                                      "assumption for chronic post-traumatic osteomyelitis"),
}

# --- PET -------------------------------------------------------------------------------------------------
PET = {
    "focus_suvmax": Parameter(3.7, 11.8, "SUV", "SUVmax of an active osteomyelitis focus (mean +- 2 SD of the "
                              "infected group, floored at the non-infected mean + 0.4 SD)", WENTER_2017),
    "low_grade_suvmax": Parameter(2.5, 3.7, "SUV", "a second, low-grade focus", WENTER_2017 + "; low end of the range"),
    "sterile_inflammation_suv": Parameter(2.3, 4.6, "SUV", "sterile implant-associated / post-operative uptake",
                                          "Gelderman SJ et al. 2018, Acta Orthop 89:634-639, doi:10.1080/17453674."
                                          "2018.1525931 (non-infected prostheses, median SUVmax 2.66-2.87, CI to 4.63)"),
    "lymph_node_suv": Parameter(2.0, 5.0, "SUV", "reactive (draining) inguinal or popliteal lymph node",
                                "Bosch P et al. 2025, Diagnostics 15:616, doi:10.3390/diagnostics15050616 (FDG-positive "
                                "nodes in 32 % of non-infected patients); SUV range an assumption"),
    "callus_suv": Parameter(1.5, 2.5, "SUV", "healing fracture callus (mild uptake for up to 3 months)",
                            "Zhuang H et al. 2003, Eur J Nucl Med 30:1096, doi:10.1007/s00259-003-1198-x; Shreve PD "
                            "et al. 1999, RadioGraphics 19:61 (fracture SUV 2.1-2.3)"),
    "muscle_suv": Parameter(0.6, 1.0, "SUV", "skeletal muscle background", "typical FDG biodistribution; assumption"),
    "fat_suv": Parameter(0.2, 0.4, "SUV", "fat background", "typical FDG biodistribution; assumption"),
    "marrow_suv": Parameter(0.8, 1.3, "SUV", "fatty marrow", "typical FDG biodistribution; assumption"),
    "cancellous_suv": Parameter(1.3, 1.9, "SUV", "red marrow of the metaphysis", "typical FDG biodistribution; assumption"),
    "metal_ac_gain": Parameter(0.13, 0.35, "x activity", "over-estimation of activity next to metal by CT-based "
                               "attenuation correction, decaying over ~5 mm",
                               "Kamel EM et al. 2003, Eur Radiol 13:724, doi:10.1007/s00330-002-1564-2 (1.20 +- 0.17 in "
                               "artefact regions); Buchbender C et al. 2013, BJR 86:20120570 (over-estimation at 74 % "
                               "of implants); Goerres GW et al. 2003, Radiology 226:577"),
    "fwhm_mm": Parameter(4.5, 6.5, "mm", "PET resolution (FWHM) after reconstruction",
                         "NEMA resolution 4.0-4.7 mm at 1 cm, 4.5-6 mm at 10 cm (vendor performance reports in J Nucl Med)"),
    "voxel_mm": Parameter(3.9, 4.3, "mm", "PET voxel size in-plane (slices 3-4 mm)",
                          "Koopman D et al., EJNMMI Phys (EARL compliance with 4x4x4 mm voxels)"),
    "noise_cv": Parameter(0.10, 0.20, "", "relative PET noise at SUV 1, spatially correlated over ~1 voxel",
                          "Castro P et al. 2018, Rev Esp Med Nucl Imagen Mol 37:229 (OSEM noise is correlated); "
                          "Razifar P et al. 2005, BMC Med Imaging 5:3"),
}

# --- lesion geometry --------------------------------------------------------------------------------------
LESION = {
    "marrow_half_extent_mm": Parameter(15, 45, "mm", "half-length of intramedullary involvement (no nail)",
                                       "assumption: focal post-traumatic osteomyelitis of 3-9 cm"),
    "nail_involvement": Parameter(0.5, 0.9, "of nail length", "intramedullary involvement around an infected nail",
                                  "infection spreads through the medullary canal along the nail (BMC Musculoskelet "
                                  "Disord 2020, doi:10.1186/s12891-020-03734-z; Lemans JVC et al. 2019, Eur J Nucl Med "
                                  "Mol Imaging 46:999, uptake along the whole nail); fraction an assumption"),
}

# --- readers: the two styles of section 4.2 of the paper ---------------------------------------------------
READER_SOURCES = {
    "thresholds": "fixed relative (25-50 % SUVmax) and absolute (SUV 2.5) thresholds are both used to delineate "
    "FDG uptake, and the absolute SUV 2.5 contour is larger (Wang et al. 2023, Front Immunol, "
    "doi:10.3389/fimmu.2023.1206682; Sci Rep 2017, doi:10.1038/s41598-017-00426-y)",
    "agreement": "reader agreement on presence of osteomyelitis: kappa 0.62-0.74 (Singer et al., Skeletal Radiol, "
    "doi:10.1007/s00256-019-03367-x); no published Dice or kappa for delineating it was found, so agreement "
    "is an outcome of the reader models, never a parameter",
}

# --- readers: what a human eye sees in a noisy image ----------------------------------------------------------
VISIBILITY = {
    "rose_k": Parameter(3, 5, "", "Rose criterion of a read: a CT change object is seen when its mean contrast over "
                        "the object in noise SDs, times the square root of its size in noise-correlation cells, "
                        "exceeds k (drawn per read; the same range for both styles, who differ in what they call "
                        "lesion, not in their eyes)",
                        "Rose A 1948, J Opt Soc Am 38:196-208, doi:10.1364/JOSA.38.000196 (k about 5 for certain "
                        "detection); Burgess AE 1999, J Opt Soc Am A 16:633-646, doi:10.1364/JOSAA.16.000633 (the "
                        "Rose model revisited: thresholds of k 3-5 depending on the task)"),
    "threshold_error": Parameter(0.05, 0.10, "relative SD", "error of a read in judging 'above my SUV threshold' on "
                                 "a colour scale, smooth over the PET resolution and independent between readers",
                                 "assumption: no measurement of visual SUV-threshold judgement was found"),
}


def assumptions() -> dict[str, str]:
    """The cohort's stated assumptions, one line per parameter (written into cohort.json)."""
    out = {}
    for group, table in (("ct", CT), ("ct_sign", CT_SIGNS), ("pet", PET), ("lesion", LESION)):
        for name, parameter in table.items():
            out[f"{group}.{name}"] = parameter.describe()
    out.update({f"readers.{k}": v for k, v in READER_SOURCES.items()})
    out["development_seed"] = (f"choices made by looking at generated cohorts used seed {DEVELOPMENT_SEED}, never a "
                               "reported seed")
    return out
