"""Write ``spectra.npz``: the spectral tables of :mod:`moto_vision.isp.spectral` (run once; needs colour-science).

    pip install colour-science && python -m moto_vision.isp.spectra.build

Every table comes from colour-science 0.4 (Colour Developers, BSD-3-Clause; https://www.colour-science.org), whose
datasets name their own sources:

- CIE 1931 2-degree colour-matching functions and the CIE daylight basis S0, S1, S2 (CIE 015:2018);
- CIE illuminants FL1-FL12, FL3.1-FL3.15, HP1-HP5, LED-B1...B5, LED-BH1, LED-RGB1, LED-V1, LED-V2 (CIE 015:2018);
- colour-science's ``SDS_LIGHT_SOURCES``: measured lamps (fluorescent, LED, HPS, mercury, metal halide,
  incandescent) from the NIST CQS 9.0 spreadsheet and other sources listed there;
- reflectances: the 190 training patches of AMPAS rawtoaces (``190_Patches.csv``), the X-Rite ColorChecker
  (BabelColor average and N. Ohta's measurements), the CIE 13.3 (1995) and CIE 2024 test colour samples and the
  NIST CQS 9.0 samples;
- the Mallett & Yuksel (EGSR 2019) basis spectra that upsample linear sRGB reflectances to spectra;
- measured camera sensitivities of the Nikon D5100 and the Sigma SD Merrill (Darrodi et al., NPL, JOSA A 2015).
  The Canon EOS 5D Mark II sensitivities that colour-science also ships are left out: their name starts with a
  benchmark camera's (``camera_matrices.BENCHMARK_CAMERAS``).

Then every matrix of :data:`moto_vision.isp.camera_matrices.ADOBE_XYZ_TO_RAW` gets sensitivities from
:func:`moto_vision.isp.spectral.sensitivities_from_matrix` (non-negative least squares with a smoothness penalty).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

OUT = Path(__file__).with_name("spectra.npz")
WAVELENGTHS = np.arange(400.0, 701.0, 10.0)
# SDS_LIGHT_SOURCES entries that are not a lamp of their own (an average daylight, CIE illuminants twice).
SKIP_LIGHTS = {"Natural", "SA", "SC"}


def _binned(sd) -> np.ndarray:
    """Box-average a spectral distribution (or a multi-spectral one) into the 10 nm bins of the grid."""
    import colour

    sd = sd.copy().align(
        colour.SpectralShape(380, 780, 1), extrapolator_kwargs={"method": "Constant", "left": 0, "right": 0}
    )
    w, v = sd.wavelengths, sd.values
    return np.stack([v[(w >= c - 5) & (w < c + 5)].mean(axis=0) for c in WAVELENGTHS])


def _lights() -> tuple[list[str], list[str], list[np.ndarray]]:
    import colour

    names, kinds, spectra = [], [], []
    for name, sd in colour.SDS_ILLUMINANTS.items():
        if name.startswith("FL") or name.startswith("HP") or name.startswith("LED-"):
            kind = "fluorescent" if name.startswith("FL") else "led" if name.startswith("LED") else "discharge"
            names.append(name)
            kinds.append(kind)
            spectra.append(_binned(sd))
    for name, sd in colour.SDS_LIGHT_SOURCES.items():
        if name in SKIP_LIGHTS:
            continue
        lower = name.lower()
        if "led" in lower or "phos" in lower:
            kind = "led"
        elif any(k in lower for k in ("hps", "lps", "mercury", "metal halide", "mhc", "h38")):
            kind = "discharge"
        elif any(k in lower for k in ("incandescent", "soft white", "kinoton")):
            kind = "incandescent"
        else:
            kind = "fluorescent"
        names.append(name)
        kinds.append(kind)
        spectra.append(_binned(sd))
    spectra = [s / s.max() for s in spectra]
    return names, kinds, spectra


def _reflectances() -> tuple[list[str], np.ndarray]:
    import colour
    from colour.characterisation import SDS_COLOURCHECKERS
    from colour.quality import SDS_TCS, SDS_VS

    sources: list[str] = []
    rows: list[np.ndarray] = []
    path = Path(colour.__file__).parent / "characterisation" / "datasets" / "rawtoaces" / "190_Patches.csv"
    table = np.genfromtxt(path, delimiter=",", names=True)
    for name in table.dtype.names[1:]:
        rows.append(np.interp(WAVELENGTHS, table["wavelength"], table[name]))
        sources.append("rawtoaces 190 patches")
    for checker in ("BabelColor Average", "ColorChecker N Ohta"):
        for sd in SDS_COLOURCHECKERS[checker].values():
            rows.append(_binned(sd))
            sources.append(f"ColorChecker ({checker})")
    for table_name, sds in (("CIE 1995 TCS", SDS_TCS["CIE 1995"]), ("CIE 2024 TCS", SDS_TCS["CIE 2024"])):
        for sd in sds.values():
            rows.append(_binned(sd))
            sources.append(table_name)
    for sd in SDS_VS["NIST CQS 9.0"].values():
        rows.append(_binned(sd))
        sources.append("NIST CQS 9.0 VS")
    return sources, np.clip(np.stack(rows), 0.0, 1.0)


def main() -> None:
    warnings.filterwarnings("ignore")
    os.environ.setdefault("COLOUR_SCIENCE__FILTER_WARNINGS", "True")
    import colour
    from colour.characterisation import MSDS_CAMERA_SENSITIVITIES
    from colour.colorimetry import SDS_BASIS_FUNCTIONS_CIE_ILLUMINANT_D_SERIES as DAYLIGHT
    from colour.recovery import MSDS_BASIS_FUNCTIONS_sRGB_MALLETT2019

    light_names, light_kinds, lights = _lights()
    reflectance_sources, reflectances = _reflectances()
    tables: dict[str, np.ndarray] = {
        "wavelengths": WAVELENGTHS,
        "cmf": _binned(colour.MSDS_CMFS["CIE 1931 2 Degree Standard Observer"]),
        "daylight_basis": np.stack([_binned(DAYLIGHT[k]) for k in ("S0", "S1", "S2")], axis=1),
        "lights": np.stack(lights),
        "light_names": np.array(light_names),
        "light_kinds": np.array(light_kinds),
        "reflectances": reflectances,
        "reflectance_sources": np.array(reflectance_sources),
        "mallett_basis": _binned(MSDS_BASIS_FUNCTIONS_sRGB_MALLETT2019),
    }
    # The camera fits below read the tables through moto_vision.isp.spectral: write them first.
    np.savez_compressed(OUT, **{k: v.astype(np.float32) if v.dtype.kind == "f" else v for k, v in tables.items()})

    import torch

    from moto_vision.isp import spectral
    from moto_vision.isp.camera_matrices import ADOBE_XYZ_TO_RAW

    spectral._load.cache_clear()
    spectral.spectral_data.cache_clear()
    names, kinds, sensitivities, matrices = [], [], [], []
    for name in ("Nikon 5100 (NPL)", "Sigma SDMerill (NPL)"):
        sens = _binned(MSDS_CAMERA_SENSITIVITIES[name])
        sens = sens / sens.max()
        names.append(
            {
                "Nikon 5100 (NPL)": "Nikon D5100 (NPL measured)",
                "Sigma SDMerill (NPL)": "Sigma SD Merrill (NPL measured)",
            }[name]
        )
        kinds.append("measured")
        sensitivities.append(sens)
        matrices.append(spectral.fit_xyz_to_raw(torch.from_numpy(sens)).numpy())
    for name, values in ADOBE_XYZ_TO_RAW.items():
        matrix = np.array(values, dtype=np.float64).reshape(3, 3) / 10000.0
        names.append(name)
        kinds.append("adobe-fit")
        sensitivities.append(spectral.sensitivities_from_matrix(matrix).numpy())
        matrices.append(matrix)
    tables.update(
        camera_names=np.array(names),
        camera_kinds=np.array(kinds),
        camera_sensitivities=np.stack(sensitivities),
        camera_matrices=np.stack(matrices),
    )
    np.savez_compressed(OUT, **{k: v.astype(np.float32) if v.dtype.kind == "f" else v for k, v in tables.items()})
    spectral._load.cache_clear()
    spectral.spectral_data.cache_clear()
    print(
        f"wrote {OUT} ({OUT.stat().st_size / 1024:.0f} KiB): {len(lights)} lights, {len(reflectances)} reflectances, "
        f"{len(names)} cameras"
    )


if __name__ == "__main__":
    main()
