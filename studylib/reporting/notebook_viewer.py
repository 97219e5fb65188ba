"""The notebook viewer (notebook 04): one patient's layers (``viewer.display_patient``) in an ipyniivue widget, with
ipywidgets to switch each layer on or off, choose the CT window, the PET colour map, SUV range and opacity, and the
values under the crosshair.

ipyniivue's wheel carries Niivue's JavaScript and sends it to JupyterLab through the kernel (anywidget): nothing is
fetched from a CDN, so the viewer works offline. The volumes are sent as gzipped NIfTI bytes (no files written).
"""

from __future__ import annotations

import os

import pandas as pd

from .viewer import (
    CT_WINDOWS,
    MAX_DISPLAY_VOXELS,
    DisplayPatient,
    display_patient,
    extreme_patients,
    focus_fraction,
    nifti_gz_bytes,
)

PET_COLORMAPS = ["hot", "warm", "plasma", "inferno", "viridis", "red", "gray"]


def patients_to_open(per_run: pd.DataFrame) -> pd.DataFrame:
    """The worst and the best test patient of every model family, one row per patient (the reasons joined)."""
    extremes = extreme_patients(per_run)
    extremes["reason"] = [f"{which} of {modality} {label} (DSC {100 * dsc:.1f} %)" for which, modality, label, dsc
                          in zip(extremes.which, extremes.modality, extremes.train_label, extremes.dsc)]
    return (extremes.groupby("patient_id", sort=False)["reason"].agg("; ".join).reset_index())


def layer_volumes(patient: DisplayPatient) -> list[dict]:
    """The patient's layers as ipyniivue volume options (gzipped NIfTI bytes; mask colour maps named ``mask_<key>``)."""
    volumes = []
    for layer in patient.layers:
        volumes.append({"data": nifti_gz_bytes(layer.array, patient.geometry, layer.slope),
                        "name": f"{layer.key}.nii.gz",
                        "colormap": f"mask_{layer.key}".lower() if layer.colour else layer.colormap,
                        "cal_min": layer.cal_min, "cal_max": layer.cal_max,
                        "opacity": (0.5 if layer.key == "pet" else 1.0 if layer.group == "image" else 0.6)
                        if layer.visible else 0.0})
    return volumes


def patient_viewer(results: str | os.PathLike, patient_id: str, height: int = 520,
                   max_voxels: int = MAX_DISPLAY_VOXELS):
    """A widget: the patient's CT with PET fused, labels, predictions and disagreement maps in Niivue, with controls."""
    import ipywidgets as widgets
    from ipyniivue import NiiVue, ShowRender, SliceType

    patient = display_patient(results, patient_id, max_voxels)
    nv = NiiVue(height=height, back_color=(0, 0, 0, 1), crosshair_color=(0.2, 1.0, 0.2, 0.7),
                multiplanar_show_render=ShowRender.NEVER, is_colorbar=False)
    for layer in patient.layers:
        if layer.colour:
            r, g, b = layer.colour
            nv.add_colormap(f"mask_{layer.key}", {"R": [0, r], "G": [0, g], "B": [0, b], "A": [0, 255],
                                                  "I": [0, 255]})
    nv.load_volumes(layer_volumes(patient))
    nv.set_slice_type(SliceType.MULTIPLANAR)
    nv.scene.crosshair_pos = focus_fraction(patient.geometry, patient.focus)  # open on the labels' centre

    opacity = {"pet": widgets.FloatSlider(0.5, min=0, max=1, step=0.05, description="PET opacity"),
               "mask": widgets.FloatSlider(0.6, min=0.1, max=1, step=0.05, description="overlays")}
    boxes = {layer.key: widgets.Checkbox(layer.visible, description=layer.name, indent=False)
             for layer in patient.layers if layer.key != "ct"}

    def apply(_=None) -> None:
        for index, layer in enumerate(patient.layers):
            if layer.key in boxes:
                level = opacity["pet" if layer.key == "pet" else "mask"].value
                nv.volumes[index].opacity = level if boxes[layer.key].value else 0.0

    for control in [*boxes.values(), *opacity.values()]:
        control.observe(apply, names="value")
    window = widgets.Dropdown(options=list(CT_WINDOWS), value="bone", description="CT window")

    def set_window(_=None) -> None:
        nv.volumes[0].cal_min, nv.volumes[0].cal_max = CT_WINDOWS[window.value]

    window.observe(set_window, names="value")
    controls = [window]
    pet_index = next((i for i, layer in enumerate(patient.layers) if layer.key == "pet"), None)
    if pet_index is not None:
        pet = patient.layers[pet_index]
        colormap = widgets.Dropdown(options=PET_COLORMAPS, value=pet.colormap, description="PET colours")
        suv = widgets.FloatRangeSlider(value=(pet.cal_min, pet.cal_max), min=0, max=max(30.0, pet.cal_max), step=0.1,
                                       description="SUV")

        def set_pet(_=None) -> None:
            nv.volumes[pet_index].colormap = colormap.value
            nv.volumes[pet_index].cal_min, nv.volumes[pet_index].cal_max = suv.value

        colormap.observe(set_pet, names="value")
        suv.observe(set_pet, names="value")
        controls += [colormap, suv, opacity["pet"]]
    view = widgets.ToggleButtons(options=[("multiplanar", SliceType.MULTIPLANAR), ("axial", SliceType.AXIAL),
                                          ("coronal", SliceType.CORONAL), ("sagittal", SliceType.SAGITTAL)])
    view.observe(lambda change: nv.set_slice_type(change["new"]), names="value")
    readout = widgets.HTML("click the image: CT HU, SUV and every layer's value under the crosshair")

    def on_location(location) -> None:
        readout.value = f"<code>{location.get('string', '')}</code>"

    nv.on_location_change(on_location)
    settings = widgets.VBox([*controls, opacity["mask"]])
    layers = widgets.VBox([widgets.HTML("<b>Layers</b>"), *boxes.values()])
    note = widgets.HTML(f"<b>{patient.patient_id}</b>"
                        + (f" (test patient of fold {patient.fold})" if patient.fold is not None else "")
                        + f": {patient.note()}")
    return widgets.VBox([note, view, nv, readout, widgets.HBox([settings, layers])])
