"""``function *`` on real models: torchvision-style ResNet and MobileNet/EfficientNet
blocks (in-place activations), timm's activation classes, Hugging Face GPT-2, BERT,
ViT, Llama and T5. Every curve is checked against an independent computation: the
formula, the module's own output on the grid, and finite differences."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import nnspec
from nnspec.backends import backend_for
from nnspec.backends.base import Call
from nnspec.execute.functions import curves, used_functions
from tests import hf_models
from tests.helpers import spec, view

# -- torchvision-style blocks, as torchvision writes them ------------------------------


class BasicBlock(nn.Module):
    """torchvision.models.resnet.BasicBlock: one ReLU(inplace=True) called twice, ``out += identity``."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        out = self.relu(out)
        return out


class Bottleneck(nn.Module):
    """torchvision.models.resnet.Bottleneck: 1x1, 3x3, 1x1, one in-place ReLU called three times."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        width = planes
        self.conv1 = nn.Conv2d(inplanes, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        out = self.relu(out)
        return out


class TinyResNet(nn.Module):
    """A torchvision ResNet's shape: stem (conv, bn, in-place ReLU, max pool), a BasicBlock
    stage and a Bottleneck stage with downsampling, average pool, fc."""

    def __init__(self, classes: int = 5):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = nn.Sequential(BasicBlock(8, 8), BasicBlock(8, 8))
        down = nn.Sequential(nn.Conv2d(8, 16, 1, 2, bias=False), nn.BatchNorm2d(16))
        self.layer2 = nn.Sequential(Bottleneck(8, 4, 2, down))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer2(self.layer1(x))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class SqueezeExcitation(nn.Module):
    """torchvision.ops.SqueezeExcitation with MobileNetV3's scale activation."""

    def __init__(self, channels: int, squeeze: int, activation=nn.ReLU, scale_activation=nn.Sigmoid):
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)
        self.activation = activation()
        self.scale_activation = scale_activation()

    def forward(self, x):
        scale = self.scale_activation(self.fc2(self.activation(self.fc1(self.avgpool(x)))))
        return scale * x


class InvertedResidual(nn.Module):
    """MobileNetV3's block: expand (Hardswish in place), depthwise, SE (ReLU, Hardsigmoid), project."""

    def __init__(self, channels: int, expanded: int):
        super().__init__()
        self.block = nn.Sequential(
            nn.Sequential(nn.Conv2d(channels, expanded, 1, bias=False), nn.BatchNorm2d(expanded), nn.Hardswish(True)),
            nn.Sequential(
                nn.Conv2d(expanded, expanded, 3, 1, 1, groups=expanded, bias=False),
                nn.BatchNorm2d(expanded),
                nn.Hardswish(True),
            ),
            SqueezeExcitation(expanded, 4, nn.ReLU, nn.Hardsigmoid),
            nn.Sequential(nn.Conv2d(expanded, channels, 1, bias=False), nn.BatchNorm2d(channels)),
        )

    def forward(self, x):
        return x + self.block(x)


class MBConv(nn.Module):
    """EfficientNet's MBConv: SiLU(inplace=True) after expand and depthwise, SE with SiLU and Sigmoid."""

    def __init__(self, channels: int, expanded: int):
        super().__init__()
        self.block = nn.Sequential(
            nn.Sequential(nn.Conv2d(channels, expanded, 1, bias=False), nn.BatchNorm2d(expanded), nn.SiLU(True)),
            nn.Sequential(
                nn.Conv2d(expanded, expanded, 3, 1, 1, groups=expanded, bias=False),
                nn.BatchNorm2d(expanded),
                nn.SiLU(True),
            ),
            SqueezeExcitation(expanded, 4, lambda: nn.SiLU(True), nn.Sigmoid),
            nn.Sequential(nn.Conv2d(expanded, channels, 1, bias=False), nn.BatchNorm2d(channels)),
        )

    def forward(self, x):
        result = self.block(x)
        result += x
        return result


class MobileStack(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1, bias=False), nn.BatchNorm2d(8), nn.Hardswish(True))
        self.mobilenet = InvertedResidual(8, 16)
        self.efficientnet = MBConv(8, 16)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        x = self.efficientnet(self.mobilenet(self.stem(x)))
        return self.head(x.mean(dim=(2, 3)))


# -- timm's activation classes, as timm.layers.activations writes them ----------------------


def _swish(x, inplace: bool = False):
    return x.mul_(x.sigmoid()) if inplace else x.mul(x.sigmoid())


class Swish(nn.Module):
    def __init__(self, inplace: bool = False):
        super().__init__()
        self.inplace = inplace

    def forward(self, x):
        return _swish(x, self.inplace)


def _hard_sigmoid(x, inplace: bool = False):
    return x.add_(3.0).clamp_(0.0, 6.0).div_(6.0) if inplace else F.relu6(x + 3.0) / 6.0


class HardSigmoid(nn.Module):
    def __init__(self, inplace: bool = False):
        super().__init__()
        self.inplace = inplace

    def forward(self, x):
        return _hard_sigmoid(x, self.inplace)


def _hard_swish(x, inplace: bool = False):
    inner = F.relu6(x + 3.0).div_(6.0)
    return x.mul_(inner) if inplace else x.mul(inner)


class HardSwish(nn.Module):
    def __init__(self, inplace: bool = False):
        super().__init__()
        self.inplace = inplace

    def forward(self, x):
        return _hard_swish(x, self.inplace)


class GELUTanh(nn.Module):
    def __init__(self, inplace: bool = False):
        super().__init__()

    def forward(self, input):
        return F.gelu(input, approximate="tanh")


class QuickGELU(nn.Module):
    def __init__(self, inplace: bool = False):
        super().__init__()

    def forward(self, input):
        return input * torch.sigmoid(1.702 * input)


class SquaredReLU(nn.Module):
    """No table knows it: found by its class name (Primer's activation)."""

    def forward(self, x):
        return F.relu(x) ** 2


class AttnActivation(nn.Module):
    """Named like an activation, but a softmax over the last axis: not a curve."""

    def forward(self, x):
        return x.softmax(dim=-1)


class TimmMlp(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.acts = nn.ModuleList(
            [GELUTanh(), QuickGELU(), Swish(True), HardSwish(True), HardSigmoid(True), SquaredReLU(), AttnActivation()]
        )
        self.unused = nn.ELU()  # built, never called: not drawn

    def forward(self, x):
        x = self.fc(x)
        return sum(act(x.clone()) for act in self.acts)


# -- helpers ------------------------------------------------------------------------------


def _render(model, inputs, query="function *"):
    return view(nnspec.render(spec([query], loss="sum"), model=model, inputs=inputs))


def _found(model, call: Call) -> dict:
    be = backend_for(model)
    with be.guest():
        trace = be.forward(call, trace=True).trace
    return used_functions(model, trace)


def _curve(data, label, kind="f(x)"):
    rows = data[(data["function"] == label) & (data["kind"] == kind)]
    return torch.tensor(rows["x"].to_numpy()), torch.tensor(rows["value"].to_numpy())


def _finite_differences(fn, x, h=1e-6):
    with torch.no_grad():
        return (fn(x + h) - fn(x - h)) / (2 * h)


def _away_from(x, kinks, eps=1e-3):
    keep = torch.ones_like(x, dtype=torch.bool)
    for k in kinks:
        keep &= (x - k).abs() > eps
    return keep


FORMULAS = {  # independent of torch's activation functions
    "relu": lambda x: x.clamp(min=0),
    "sigmoid": lambda x: 1 / (1 + torch.exp(-x)),
    "tanh": lambda x: (torch.exp(x) - torch.exp(-x)) / (torch.exp(x) + torch.exp(-x)),
    "silu": lambda x: x / (1 + torch.exp(-x)),
    "hardswish": lambda x: x * (x + 3).clamp(0, 6) / 6,
    "hardsigmoid": lambda x: (x + 3).clamp(0, 6) / 6,
    "gelu": lambda x: 0.5 * x * (1 + torch.special.erf(x / math.sqrt(2))),
    "gelu(approximate='tanh')": lambda x: 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3))),
    "gelu_new": lambda x: 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3))),
    "quick_gelu": lambda x: x / (1 + torch.exp(-1.702 * x)),
    "SquaredReLU": lambda x: x.clamp(min=0) ** 2,
}
KINKS = {"relu": [0], "hardswish": [-3, 3], "hardsigmoid": [-3, 3], "SquaredReLU": [0]}


def _check_numbers(data, labels):
    """Each curve equals its formula; each derivative equals finite differences of it."""
    for label in labels:
        x, y = _curve(data, label)
        assert len(x) == 201 and x.min() == -5 and x.max() == 5
        f = FORMULAS[label]
        assert y.numpy() == pytest.approx(f(x).numpy(), abs=1e-12), label
        _, dy = _curve(data, label, "f'(x)")
        keep = _away_from(x, KINKS.get(label, []))
        assert dy[keep].numpy() == pytest.approx(_finite_differences(f, x)[keep].numpy(), abs=1e-6), label


# -- torchvision-style models: in-place activations --------------------------------------


def test_resnet_with_inplace_relu_and_residual_add():
    torch.manual_seed(0)
    model = TinyResNet()
    before = copy.deepcopy(model.state_dict())
    v = _render(model, torch.randn(2, 3, 16, 16))
    assert list(dict.fromkeys(v.data["function"])) == ["relu"]
    _check_numbers(v.data, ["relu"])
    # the model's own modules are untouched: still in place, still float32, same weights
    assert model.relu.inplace and model.layer1[0].relu.inplace
    assert all(torch.equal(before[k], t) for k, t in model.state_dict().items())


def test_mobilenet_and_efficientnet_blocks():
    torch.manual_seed(0)
    model = MobileStack()
    v = _render(model, torch.randn(2, 3, 16, 16))
    labels = list(dict.fromkeys(v.data["function"]))
    assert labels == ["hardswish", "relu", "hardsigmoid", "silu", "sigmoid"]  # the model's order
    _check_numbers(v.data, labels)


def test_timm_activation_classes_and_the_name_fallback():
    torch.manual_seed(0)
    model = TimmMlp()
    found = _found(model, Call((torch.randn(3, 4),)))
    assert list(found) == [
        "gelu(approximate='tanh')",
        "quick_gelu",
        "silu",
        "hardswish",
        "hardsigmoid",
        "SquaredReLU",
    ]  # AttnActivation is a softmax (not elementwise); ELU never ran
    data = curves(found)
    _check_numbers(data, list(found))
    # the curve is each module's own output on the grid, in-place ones included
    for label, module in zip(found, model.acts):
        x, y = _curve(data, label)
        assert torch.equal(y, module(x.clone())), label


def test_settings_make_the_curve_and_the_name():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.GELU()
            self.b = nn.GELU(approximate="tanh")
            self.c = nn.LeakyReLU(0.1, inplace=True)
            self.d = nn.ELU(alpha=0.5)
            self.e = nn.PReLU(init=0.25)
            self.f = nn.Softplus(beta=2.0)

        def forward(self, x):
            return self.f(self.e(self.d(self.c(self.b(self.a(x))))))

    model = Net()
    found = _found(model, Call((torch.randn(2, 3),)))
    assert list(found) == [
        "gelu",
        "gelu(approximate='tanh')",
        "leaky_relu(0.1)",
        "elu(alpha=0.5)",
        "prelu(0.25)",
        "softplus(beta=2.0)",
    ]
    data = curves(found)
    x, _ = _curve(data, "gelu")
    expected = {
        "gelu": FORMULAS["gelu"](x),
        "gelu(approximate='tanh')": FORMULAS["gelu(approximate='tanh')"](x),
        "leaky_relu(0.1)": torch.where(x > 0, x, 0.1 * x),
        "elu(alpha=0.5)": torch.where(x > 0, x, 0.5 * (torch.exp(x) - 1)),
        "prelu(0.25)": torch.where(x > 0, x, 0.25 * x),
        "softplus(beta=2.0)": torch.log1p(torch.exp(2 * x)) / 2,
    }
    for label, y in expected.items():
        assert _curve(data, label)[1].numpy() == pytest.approx(y.numpy(), abs=1e-12), label
    _, d = _curve(data, "leaky_relu(0.1)", "f'(x)")
    assert d.numpy() == pytest.approx(torch.where(x > 0, 1.0, 0.1).double().numpy())
    assert model.e.weight.dtype == torch.float32 and model.c.inplace  # copies were drawn


def test_one_name_two_curves_are_told_apart_by_path():
    from transformers.activations import ClippedGELUActivation

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.wide = ClippedGELUActivation(-10.0, 10.0)
            self.narrow = ClippedGELUActivation(-0.1, 1.0)
            self.again = ClippedGELUActivation(-10.0, 10.0)  # the same curve as `wide`: drawn once

        def forward(self, x):
            return self.again(self.narrow(self.wide(x)))

    found = _found(Net(), Call((torch.randn(2, 3),)))
    assert list(found) == ["gelu_10", "gelu_10 (narrow)"]
    x, y = _curve(curves(found), "gelu_10 (narrow)")
    assert y.numpy() == pytest.approx(FORMULAS["gelu"](x).clamp(-0.1, 1.0).numpy(), abs=1e-12)


def test_functions_called_as_functions():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 3)

        def forward(self, x):
            return torch.tanh(F.gelu(self.fc(x))) + F.silu(x)

    found = _found(Net(), Call((torch.randn(2, 3),)))
    assert set(found) == {"gelu", "tanh", "silu"}
    _check_numbers(curves(found), ["gelu", "tanh", "silu"])


def test_a_lone_curve_is_named_by_the_legend():
    model = nn.Sequential(nn.Linear(3, 3), nn.ReLU(inplace=True))
    v = _render(model, torch.randn(2, 3))
    enc = v.vega_lite()["encoding"] if "encoding" in v.vega_lite() else v.vega_lite()["layer"][0]["encoding"]
    assert enc["color"]["field"] == "function"
    assert set(v.data["function"]) == {"relu"}


# -- Hugging Face models --------------------------------------------------------------------

HF = {
    "gpt2": (["gelu_new"], "input_ids"),
    "bert": (["gelu", "tanh"], "input_ids"),  # BertIntermediate's GELUActivation, the pooler's Tanh
    "vit": (["gelu", "tanh"], "pixel_values"),
    "llama": (["silu"], "input_ids"),
    "t5": (["relu"], "input_ids"),
}


def _hf_inputs(name: str, model) -> dict:
    g = torch.Generator().manual_seed(0)
    if HF[name][1] == "pixel_values":
        return {"pixel_values": torch.randn(2, 3, hf_models.IMAGE, hf_models.IMAGE, generator=g)}
    ids = torch.randint(0, hf_models.VOCAB, (2, 8), generator=g)
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    if model.config.is_encoder_decoder:
        inputs["decoder_input_ids"] = ids
    return inputs


@pytest.mark.parametrize("name", list(HF))
def test_hugging_face_models(name):
    model = getattr(hf_models, name)()
    v = _render(model, _hf_inputs(name, model))
    labels = list(dict.fromkeys(v.data["function"]))
    assert labels == HF[name][0]
    _check_numbers(v.data, labels)
    # each curve is the model's own activation module's output on the grid
    be = backend_for(model)
    for m in be.modules():
        obj = be.module_object(m.path)
        if type(obj).__name__ in ("NewGELUActivation", "GELUActivation", "SiLUActivation", "Tanh", "ReLU"):
            label = {"NewGELUActivation": "gelu_new", "GELUActivation": "gelu", "SiLUActivation": "silu"}.get(
                type(obj).__name__, type(obj).__name__.lower()
            )
            x, y = _curve(v.data, label)
            assert y.numpy() == pytest.approx(obj(x.float()).double().numpy(), abs=1e-6), m.path
