import pytest
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


def test_a_planted_mismatch_outlier_moves_the_update_no_more_than_the_dual_clip_allows():
    """One token whose learner logprob is 5 nats above the sampler's (ratio e^5 ≈ 148) in an episode with a
    negative advantage: PPO's clip alone leaves its loss −ratio·A, 148× a normal token's, with a gradient to
    match; the dual clip caps it at −c·A and gives it no gradient."""
    mask = torch.ones(1, 4)
    old = torch.zeros(1, 4)
    adv = torch.tensor([-1.0])
    weights = torch.tensor([0.25])

    def run(c):
        logp = torch.tensor([[0.0, 0.0, 0.0, 5.0]], requires_grad=True)
        loss, stats = grpo_loss(logp, old, adv, mask, weights, eps_low=0.2, eps_high=0.28, clip_ratio_c=c)
        loss.backward()
        return loss.item(), logp.grad[0], stats

    bounded, grad, stats = run(3.0)
    unbounded, raw_grad, _ = run(1e9)
    assert unbounded == pytest.approx(0.25 * (3 + torch.e ** 5), rel=1e-5)  # the outlier dominates
    assert bounded == pytest.approx(0.25 * (3 + 3.0), rel=1e-6)  # at most c·|A| for that token
    assert grad[3] == 0.0 and raw_grad[3] == pytest.approx(0.25 * torch.e ** 5, rel=1e-5)
    assert torch.equal(grad[:3], raw_grad[:3])  # the other tokens learn as before
    assert stats["dual_clip_fraction"] == 0.25 and stats["ratio_max"] == pytest.approx(torch.e ** 5, rel=1e-5)
