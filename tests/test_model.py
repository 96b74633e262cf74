import torch
import torch.nn as nn

from lab.engine.model import (
    count_conv_layers,
    count_gradients,
    count_optimizer_state,
    count_trainable_parameters,
    last_linear_in_features,
    resnet18,
)
from lab.engine.train import build_optimizer


def _one_step(model, optimizer):
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))
    optimizer.zero_grad()
    nn.functional.cross_entropy(model(x), y).backward()
    optimizer.step()


def test_conv_layers_and_last_linear():
    model = resnet18()
    assert count_conv_layers(model) == {"3x3": 17, "1x1": 3, "total": 20}
    assert count_conv_layers(resnet18(batch_norm=False))["total"] == 20
    assert last_linear_in_features(model) == 512
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_parameter_counts_with_and_without_batch_norm():
    with_bn, without_bn = resnet18(), resnet18(batch_norm=False)
    assert count_trainable_parameters(with_bn) == 11_173_962
    assert count_trainable_parameters(without_bn) == 11_164_362
    bn_params = sum(p.numel() for m in with_bn.modules() if isinstance(m, nn.BatchNorm2d) for p in m.parameters())
    assert count_trainable_parameters(with_bn) - count_trainable_parameters(without_bn) == bn_params
    assert not any(isinstance(m, nn.BatchNorm2d) for m in without_bn.modules())


def test_gradients_after_backward_equal_parameters_for_sgd_and_adam():
    torch.manual_seed(0)
    for name in ("sgd", "adam"):
        model = resnet18()
        optimizer = build_optimizer(name, model.parameters(), lr=0.01)
        assert count_gradients(model) == 0  # no gradient before the first backward
        _one_step(model, optimizer)
        assert count_gradients(model) == count_trainable_parameters(model) == 11_173_962


def test_adam_state_is_two_tensors_per_parameter_and_is_not_gradients():
    model = resnet18()
    adam = build_optimizer("adam", model.parameters(), lr=0.01)
    assert count_optimizer_state(adam) == 0
    _one_step(model, adam)
    assert count_optimizer_state(adam) == 2 * count_trainable_parameters(model)
    sgd_model = resnet18()
    sgd = build_optimizer("sgd", sgd_model.parameters(), lr=0.01)
    _one_step(sgd_model, sgd)
    assert count_optimizer_state(sgd) == count_trainable_parameters(sgd_model)  # one momentum buffer


def test_optimizers_have_the_lab_settings():
    params = [nn.Parameter(torch.zeros(3))]
    sgd = build_optimizer("sgd", params, lr=0.1).defaults
    nesterov = build_optimizer("sgd-nesterov", params, lr=0.1).defaults
    assert (sgd["momentum"], sgd["weight_decay"], sgd["nesterov"]) == (0.9, 5e-4, False)
    assert (nesterov["momentum"], nesterov["nesterov"]) == (0.9, True)
    for name, cls in (("adagrad", torch.optim.Adagrad), ("adadelta", torch.optim.Adadelta), ("adam", torch.optim.Adam)):
        opt = build_optimizer(name, params, lr=0.1)
        assert isinstance(opt, cls) and opt.defaults["lr"] == 0.1 and opt.defaults["weight_decay"] == 5e-4
