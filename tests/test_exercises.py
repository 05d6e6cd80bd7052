"""The exercise checks accept the right answer and explain the typical wrong ones."""
import torch

from asyrp_edu import exercises


def test_right_answers_pass():
    assert exercises.check_alpha_bar(lambda b: torch.cumprod(1 - b, 0))
    assert exercises.check_q_sample(lambda x0, t, e, ab: ab[t].view(-1, 1, 1, 1).sqrt() * x0
                                    + (1 - ab[t].view(-1, 1, 1, 1)).sqrt() * e)
    assert exercises.check_predict_x0(lambda x, e, a: (x - (1 - a) ** 0.5 * e) / a ** 0.5)
    assert exercises.check_direction_to_xt(lambda e, ap, s: (1 - ap - s ** 2) ** 0.5 * e)


def test_wrong_answers_fail_with_a_reason():
    v = exercises.check_predict_x0(lambda x, e, a: (x - (1 - a) ** 0.5 * e) / a)
    assert not v and "sqrt(alpha_bar_t)" in v.message
    v = exercises.check_direction_to_xt(lambda e, ap, s: (1 - ap) ** 0.5 * e)
    assert not v and "σ_t" in v.message
    v = exercises.check_alpha_bar(lambda b: torch.cumprod(b, 0))
    assert not v and "1 − β" in v.message
    v = exercises.check_q_sample(lambda x0, t, e, ab: None)
    assert not v and "None" in v.message
    assert repr(v).startswith("❌")


def test_asymmetric_step_check():
    def right(x, e, e_edit, a, a_prev):
        return a_prev ** 0.5 * (x - (1 - a) ** 0.5 * e_edit) / a ** 0.5 + (1 - a_prev) ** 0.5 * e

    def symmetric(x, e, e_edit, a, a_prev):
        return right(x, e_edit, e_edit, a, a_prev)

    assert exercises.check_asymmetric_step(right)
    v = exercises.check_asymmetric_step(symmetric)
    assert not v and "symmetric" in v.message
