"""Asyrp's training losses: the directional CLIP loss and the L1 reconstruction loss on P_t.

Kwon et al. 2023, eq. 5 (after Gal et al. 2022, StyleGAN-NADA):

    ΔT = E_T(y_target) − E_T(y_source)
    ΔI = E_I(P_t^edit) − E_I(P_t^source)
    L_direction = 1 − cos(ΔI, ΔT)
    L = λ_CLIP · L_direction + λ_recon · |P_t^edit − P_t^source|,   λ_recon = 3 · cos(E_T(y_source), E_T(y_target))

Our addition, off by default: L_keep = mean_k cos(ΔI, ΔT_k)² over attributes k the edit should leave alone (see
keep_loss), in the role of the identity loss the authors add for human faces.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F

TextEncoder = Callable[[list[str]], torch.Tensor]  # prompts -> (N, D) features
ImageEncoder = Callable[[torch.Tensor], torch.Tensor]  # images (B, 3, H, W) in [-1, 1] -> (B, D) features


def check_prompts(source: str, target: str) -> None:
    """Raise a clear error for empty prompts or a target equal to the source."""
    for name, text in (("source", source), ("target", target)):
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"the {name} prompt is empty; give a text such as 'a face' / 'a smiling face'")
    if source.strip().lower() == target.strip().lower():
        raise ValueError(f"source and target are the same text ({source!r}): the direction ΔT would be zero; "
                         "name the change in the target, e.g. 'a smiling face'")


def text_features(encode_text: TextEncoder, prompt: str, templates: Sequence[str] = ("{}",)) -> torch.Tensor:
    """E_T(prompt), averaged over prompt templates ('a photo of {}', …) and L2-normalised: (D,)."""
    feats = F.normalize(encode_text([tpl.format(prompt) for tpl in templates]).float(), dim=-1)  # (N, D)
    return F.normalize(feats.mean(0), dim=-1)


def text_direction(encode_text: TextEncoder, source: str, target: str,
                   templates: Sequence[str] = ("{}",)) -> tuple[torch.Tensor, float]:
    """ΔT = E_T(target) − E_T(source), normalised (D,), and cos(E_T(source), E_T(target))."""
    check_prompts(source, target)
    e_src, e_tgt = text_features(encode_text, source, templates), text_features(encode_text, target, templates)
    # ΔT = E_T(y_tgt) − E_T(y_src)
    return F.normalize(e_tgt - e_src, dim=-1), float(e_src @ e_tgt)


def default_lambda_recon(text_cosine: float) -> float:
    """The paper's λ_recon = 3 · cos(E_T(source), E_T(target)): closer texts, gentler edits."""
    return 3.0 * text_cosine


def directional_clip_loss(encode_image: ImageEncoder, P_edit: torch.Tensor, P_source: torch.Tensor,
                          delta_T: torch.Tensor, kind: str = "cosine", edit_features: torch.Tensor | None = None
                          ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image directional loss (B,) and S_dir = cos(ΔI, ΔT) (B,); kind 'cosine' or the authors' 'log'.
    edit_features: normalised E_I(P_edit) when already computed, so P_edit is encoded once."""
    # ΔI = E_I(P_t^edit) − E_I(P_t^source)        (B, D); the source image gets no gradient
    with torch.no_grad():
        e_source = F.normalize(encode_image(P_source).float(), dim=-1)
    if edit_features is None:
        edit_features = F.normalize(encode_image(P_edit).float(), dim=-1)
    delta_I = edit_features - e_source
    # S_dir = cos(ΔI, ΔT)                          (B,)
    s_dir = F.cosine_similarity(delta_I, delta_T.to(delta_I).expand_as(delta_I), dim=-1)
    if kind == "cosine":
        # L_direction = 1 − cos(ΔI, ΔT)
        return 1 - s_dir, s_dir
    if kind == "log":
        # the authors' code: −log((1 + cos) / 2), steeper when the direction is far off
        return -torch.log((1 + s_dir).clamp(min=1e-6) / 2), s_dir
    raise ValueError(f"unknown directional loss kind {kind!r}; use 'cosine' or 'log'")


def keep_loss(encode_image: ImageEncoder, P_edit: torch.Tensor, P_unedited: torch.Tensor,
              keep_directions: Sequence[torch.Tensor], edit_features: torch.Tensor | None = None) -> torch.Tensor:
    """Per-image L_keep (B,): how far this step's change of the image points along attributes that should stay.
    edit_features: normalised E_I(P_edit) when already computed."""
    # ΔI = E_I(P_t^edit) − E_I(P_t^unedited)       (B, D): the edit alone, both as blurred as each other
    with torch.no_grad():
        e_unedited = F.normalize(encode_image(P_unedited).float(), dim=-1)
    if edit_features is None:
        edit_features = F.normalize(encode_image(P_edit).float(), dim=-1)
    delta_I = edit_features - e_unedited
    # L_keep = mean_k cos(ΔI, ΔT_k)²                (B,)
    cosines = [F.cosine_similarity(delta_I, d.to(delta_I).expand_as(delta_I), dim=-1) for d in keep_directions]
    return torch.stack(cosines).pow(2).mean(dim=0)


def reconstruction_loss(P_edit: torch.Tensor, P_source: torch.Tensor) -> torch.Tensor:
    """Per-image L1 distance |P_t^edit − P_t^source| (B,): keeps what the text does not ask to change."""
    return (P_edit - P_source.detach()).abs().mean(dim=(1, 2, 3))


def asyrp_loss(encode_image: ImageEncoder, P_edit: torch.Tensor, P_source: torch.Tensor, delta_T: torch.Tensor,
               lambda_recon: float, lambda_clip: float = 1.0, kind: str = "cosine",
               clip_reference: torch.Tensor | None = None, keep_directions: Sequence[torch.Tensor] = (),
               lambda_keep: float = 0.0, keep_reference: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """The total loss (scalar) with its parts, for one step of f_t training.

    ΔI is measured against clip_reference when given (the authors' code uses the original image x0), else against
    P_source; the L1 term always compares with P_source. With keep_directions and lambda_keep > 0, L_keep compares
    with keep_reference (an unedited P_t), and P_edit is encoded once for both CLIP terms.
    """
    reference = P_source if clip_reference is None else clip_reference
    keeping = bool(len(keep_directions)) and lambda_keep > 0
    e_edit = F.normalize(encode_image(P_edit).float(), dim=-1) if keeping else None  # (B, D)
    l_dir, s_dir = directional_clip_loss(encode_image, P_edit, reference, delta_T, kind, e_edit)
    l_rec = reconstruction_loss(P_edit, P_source)
    # L = λ_CLIP · L_direction + λ_recon · |P_t^edit − P_t^source|  (+ λ_keep · L_keep)
    total = (lambda_clip * l_dir + lambda_recon * l_rec).mean()
    if keeping:
        if keep_reference is None:
            raise ValueError("lambda_keep > 0 needs keep_reference, the unedited P_t to compare with")
        total = total + lambda_keep * keep_loss(encode_image, P_edit, keep_reference, keep_directions, e_edit).mean()
    return {"loss": total, "direction": l_dir.mean().detach(), "recon": l_rec.mean().detach(),
            "s_dir": s_dir.mean().detach()}
