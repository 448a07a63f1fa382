import torch

from toolmaster.learner.losses import grpo_loss, sft_loss


def test_grpo_loss_clips_and_weighs_tokens():
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    old = torch.zeros(1, 3)
    adv = torch.tensor([1.0])
    # ratio e^1 > 1 + eps_high: the positive advantage is clipped at 1.28 per token
    logp = torch.ones(1, 3, requires_grad=True)
    loss, stats = grpo_loss(logp, old, adv, mask, torch.tensor([0.5]), eps_low=0.2, eps_high=0.28)
    assert abs(loss.item() + 1.28) < 1e-6 and stats["clip_fraction"] == 1.0
    loss.backward()
    assert torch.all(logp.grad == 0)  # clipped: no gradient
    # on-policy: ratio 1, gradient = -A/N on masked tokens only
    logp = torch.zeros(1, 3, requires_grad=True)
    loss, _ = grpo_loss(logp, old, adv, mask, torch.tensor([0.5]), eps_low=0.2, eps_high=0.28)
    loss.backward()
    assert torch.allclose(logp.grad, torch.tensor([[-0.5, -0.5, 0.0]]))


def test_kl_term_is_zero_at_reference_and_positive_away():
    mask = torch.ones(1, 2)
    adv = torch.tensor([0.0])
    logp = torch.tensor([[-1.0, -2.0]])
    _, same = grpo_loss(logp, logp, adv, mask, torch.tensor([0.5]), 0.2, 0.2, ref_logp=logp, beta=0.1)
    loss, away = grpo_loss(logp, logp, adv, mask, torch.tensor([0.5]), 0.2, 0.2, ref_logp=logp - 0.5, beta=0.1)
    assert same["kl"] == 0.0 and away["kl"] > 0 and loss.item() > 0


def test_sft_loss_ignores_unmasked_tokens():
    logp = torch.tensor([[-1.0, -5.0, -3.0]])
    assert sft_loss(logp, torch.tensor([[1.0, 0.0, 1.0]]), total_tokens=2.0).item() == 2.0
