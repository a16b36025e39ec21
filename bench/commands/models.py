"""`bench models list|build|inspect`."""

from __future__ import annotations

import argparse
import sys

from bench.errors import EXIT_OK, ModelError
from bench.experiments.qat import QAT_RECIPES
from bench.zoo.architectures import ARCHITECTURES
from bench.zoo.build import BuildOptions, VariantBuilder, check_training, training_choice
from bench.zoo.cache import VariantCache
from bench.zoo.names import UserModel, parse_model, parse_models
from bench.zoo.recipes import RECIPES


def main(args: argparse.Namespace) -> int:
    return {"list": list_models, "build": build_models, "inspect": inspect_model}[
        args.models_command](args)


def list_models(args: argparse.Namespace) -> int:
    print("architectures (name: default size, options):")
    for arch in ARCHITECTURES.values():
        print(f"  {arch.name:<14} {arch.title:<42} @{arch.default_size:<4} {arch.options_help}")
    print("\nnames: ARCH[:WEIGHTS][@SIZE][,KEY=VALUE]...  e.g. mobilenet_v2@160,alpha=0.5")
    print("weights: random (seeded, the default: same name, same bytes on every machine)")
    for arch in ARCHITECTURES.values():
        for name, source in arch.weight_sources().items():
            print(f"  {arch.name + ':' + name:<28} {source.description}")
    print("or a path: a .tflite file (measured as is), a .keras/.h5 file or a SavedModel dir\n")
    print("recipes:")
    for recipe in RECIPES.values():
        print(f"  {recipe.name:<16} {recipe.summary}\n  {'':<16} paper: {recipe.paper}")
    print("\nquantization-aware training (need --train-data FOLDER; not in the default run):")
    for qat in QAT_RECIPES.values():
        print(f"  {qat.name:<16} {qat.summary}\n  {'':<16} paper: {qat.paper}")
    return EXIT_OK


def _builder(args: argparse.Namespace, options: BuildOptions) -> VariantBuilder:
    return VariantBuilder(VariantCache(args.cache), options,
                          on_event=lambda line: print(line, file=sys.stderr, flush=True))


def build_models(args: argparse.Namespace) -> int:
    names = [name for group in args.models for name in group]  # each argument is a list
    specs = parse_models(names)
    options = BuildOptions(args.calibration_size, args.float_io,
                           train_data=training_choice(args.train_data),
                           qat_epochs=args.qat_epochs, qat_steps=args.qat_steps)
    check_training(args.recipes, options)
    built = _builder(args, options).build(specs, args.recipes)
    for (model, recipe), variant in built.items():
        if variant.status == "ok":
            note = " (random weights)" if variant.random_weights else ""
            packed = ((variant.check or {}).get("weight_levels") or {}).get("packed_4bit_bytes")
            if packed is not None:
                note += f" (packed 4-bit size {packed / 1e6:.3f} MB)"
            print(f"{model:<24} {recipe:<16} {variant.size_bytes / 1e6:8.2f} MB  "
                  f"{variant.sha256[:12]}  {variant.path}{note}")
        else:
            print(f"{model:<24} {recipe:<16} FAILED: {variant.error}")
    return EXIT_OK


def inspect_model(args: argparse.Namespace) -> int:
    from bench.zoo.inspect import format_report, inspect_tflite

    spec = parse_model(args.model)
    fp32_size = None
    if isinstance(spec, UserModel) and spec.kind == "tflite":
        path = spec.path
    else:
        built = _builder(args, BuildOptions()).build([spec], [args.recipe])
        variant = built[spec.name, args.recipe]
        if variant.status != "ok":
            raise ModelError(f"{spec.name} {args.recipe}: {variant.error}")
        path = variant.path
        fp32 = built.get((spec.name, "fp32"))
        fp32_size = fp32.size_bytes if fp32 and fp32.status == "ok" else None
        if variant.random_weights:
            print("weights: random (seeded)")
    print(format_report(inspect_tflite(path), fp32_size_bytes=fp32_size))
    return EXIT_OK
