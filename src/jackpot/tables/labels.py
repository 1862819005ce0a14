"""How axis values print: the paper's names for models, datasets, methods and sanity checks."""

from __future__ import annotations

MODEL_LABELS = {"vgg19": "VGG19", "resnet32": "ResNet32", "resnet8": "ResNet8",
                "resnet32_thin": "ResNet32-thin", "vgg_tiny": "VGG-tiny"}
DATASET_LABELS = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "digits": "digits"}
PRUNER_LABELS = {"dense": "Full network", "lottery": "Lottery tickets", "snip": "SNIP", "grasp": "GraSP",
                 "smart_ratio": "Random tickets", "random": "Uniform random", "obd": "OBD",
                 "lr_rewinding": "LR rewinding", "hybrid": "Hybrid tickets"}
CHECK_LABELS = {"none": "", "random_labels": "random labels", "random_pixels": "random pixels",
                "random_pixels_labels": "random pixels+labels", "half_dataset": "half dataset",
                "layerwise_rearrange": "layerwise rearrange", "layerwise_shuffle": "shuffled weights",
                "reinit": "reinit"}


def row_label(row: tuple[str, ...], row_axes: tuple[str, ...]) -> str:
    """A row's name as the paper writes it: method · check, led by the model when models share the table."""
    values = dict(zip(row_axes, row, strict=True))
    label = PRUNER_LABELS.get(values["pruner"], values["pruner"])
    check = CHECK_LABELS.get(values["sanity_check"], values["sanity_check"])
    if check:
        label += f" · {check}"
    if "model" in values:
        label = f"{MODEL_LABELS.get(values['model'], values['model'])} · {label}"
    return label


def group_label(axis: str, value: str) -> str:
    """A column group's name (a dataset or a model) as the paper writes it."""
    return (DATASET_LABELS if axis == "dataset" else MODEL_LABELS).get(value, value)
