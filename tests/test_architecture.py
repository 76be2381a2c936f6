"""The architecture's rules (docs/ARCHITECTURE.md), checked on the source and the registry:
layers point inward, one construction site per family, every family a FlowModel, module sizes."""
from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from flow.models import registry  # noqa: E402
from flow.models.protocol import Condition, FlowModel, Latents  # noqa: E402

#: package -> the packages it may import from (inner layers only)
ALLOWED = {
    "flow.ops": {"flow.ops"},
    "flow.layers": {"flow.layers", "flow.ops"},
    "flow.models": {"flow.models", "flow.layers", "flow.ops"},
    "flow.editing": {"flow.editing", "flow.models", "flow.ops"},
    "flow.tools": {"flow.tools", "flow.editing", "flow.models", "flow.layers", "flow.ops"},
}


def _modules(pkg_dir: str):
    """(path, dotted module name) of every source file of a package."""
    for path in sorted((ROOT / pkg_dir).rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        yield path, ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, module: str) -> set[str]:
    """Absolute names of the project modules a file imports (relative imports resolved)."""
    pkg = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    out = set()
    for n in ast.walk(ast.parse(path.read_text())):
        if isinstance(n, ast.Import):
            out |= {a.name for a in n.names}
        elif isinstance(n, ast.ImportFrom):
            if n.level:
                base = pkg.split(".")[:len(pkg.split(".")) - (n.level - 1)]
                name = ".".join(base + ([n.module] if n.module else []))
            else:
                name = n.module or ""
            out.add(name)
            out |= {f"{name}.{a.name}" for a in n.names}
    return {m for m in out if m.split(".")[0] in ("flow", "app")}


def test_layers_point_inward():
    """Nothing in flow/ imports app/, and each layer of flow/ imports only inner layers."""
    bad = []
    for path, mod in _modules("flow"):
        layer = ".".join(mod.split(".")[:2])
        for imp in _imports(path, mod):
            target = ".".join(imp.split(".")[:2])
            if imp.split(".")[0] == "app" or (layer in ALLOWED and target != "flow" and target not in ALLOWED[layer]):
                bad.append(f"{mod} imports {imp}")
    assert not bad, bad
    # and the check sees what it should: the editing layer does import the models
    assert "flow.models.protocol" in _imports(ROOT / "flow/editing/window.py", "flow.editing.window")


def test_each_family_is_constructed_in_one_place():
    """Outside the registry no code under flow/ or app/ calls a model class."""
    classes = {f.model_class.__name__ for f in registry.FAMILIES.values()}
    calls = []
    for pkg in ("flow", "app"):
        for path, mod in _modules(pkg):
            for n in ast.walk(ast.parse(path.read_text())):
                if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in classes:
                    calls.append(f"{mod}:{n.lineno}")
    assert calls == [], calls


def test_no_module_over_600_lines():
    big = [(str(p.relative_to(ROOT)), n) for pkg in ("flow", "app") for p, _ in _modules(pkg)
           if (n := len(p.read_text().splitlines())) > 600]
    assert not big, big


@pytest.mark.parametrize("name", ["tiny_4x", "srflow_da_df2k_4x", "hcflow_tiny_sr_4x", "hcflow_tiny_rescaling_4x"])
def test_every_family_is_a_flow_model(name):
    """Built through the registry, each family's model satisfies the protocol, and the
    protocol's promises hold: draws are seeded per sample, decode(region) is the window of
    the whole decode (exactly without a local decode), kinds and families are named."""
    torch.manual_seed(0)
    cfg = registry.preset(name)
    fam = registry.family_of(cfg)
    model = registry.build(cfg).eval()
    assert isinstance(model, FlowModel) and isinstance(model, fam.model_class)
    assert model.family == fam.name and model.kind in ("sr", "rescaling")
    lr = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        cond = model.encode_condition(lr)
        assert isinstance(cond, Condition) and cond.hr_size == (8 * model.scale, 8 * model.scale)
        lat = model.draw_latents(cond, 0.7, 5, 2)
        assert isinstance(lat, Latents) and lat.batch == 2
        assert lat.select(1).equal(model.draw_latents(cond, 0.7, 6, 1))      # sample k: seed + k
        shapes = model.latent_shapes(*cond.padded_hr_size)
        assert [tuple(t.shape[1:]) for t in lat.levels] == [tuple(s) for s in shapes]
        one = lat.select(0)
        full = model.decode(cond, one)
        s = model.total_stride
        box = (0, 2 * s, s, 3 * s)
        win = model.decode(cond, one, region=box)
        assert win.shape[-2:] == (2 * s, 2 * s)
        if not model.supports_region:
            assert torch.equal(win, full[..., 0:2 * s, s:3 * s])
        assert model.nll(full.clamp(0, 1), lr).bits_per_dim.shape == (1,)


def test_registry_resolves_configs_of_every_family(tmp_path):
    for fam in registry.FAMILIES.values():
        for name in list(fam.presets)[:2]:
            cfg = registry.resolve_config(name.upper().replace("_", "-"))      # names are case/dash-insensitive
            assert registry.family_of(cfg) is fam and cfg.to_dict() == fam.presets[name].to_dict()
            assert registry.config_from_dict(cfg.to_dict()).to_dict() == cfg.to_dict()
    with pytest.raises(KeyError, match="unknown preset"):
        registry.preset("nope")
    # a training config's model entry: preset + overrides, sub-mappings merged key by key
    c = registry.train_model_config({"preset": "tiny_4x", "flow": {"K": 3}, "name": "x"})
    assert (c.flow.K, c.flow.L, c.name) == (3, registry.preset("tiny_4x").flow.L, "x")
    h = registry.train_model_config({"preset": "hcflow_tiny_sr_4x", "hidden": 8})
    assert registry.family_of(h).name == "hcflow" and h.hidden == 8
    # legacy model files: SRFlow configs without rrdb.tail are the ESRGAN tail
    d = registry.preset("tiny_4x").to_dict()
    del d["rrdb"]["tail"]
    assert registry.config_from_dict(d, legacy=True).rrdb.tail == "esrgan"
    assert registry.config_from_dict(d).rrdb.tail == "official"
