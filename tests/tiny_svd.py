"""A tiny, randomly initialised but real SVD pipeline, for tests and benchmarks.

It has the same classes and the same loading path as a hub checkpoint, only small enough
to run on a laptop CPU in a second. Usage: ``python -m tests.tiny_svd FOLDER`` writes it
to FOLDER, which ``LOCAL_SVD_MODEL`` can then point at.
"""

from __future__ import annotations

import sys
from pathlib import Path


def build_tiny_pipeline(folder: str | Path, *, vae_blocks: int = 4) -> Path:
    """Build, save and return the folder of a tiny SVD pipeline (about 0.1 s).

    ``vae_blocks`` 4 gives SVD's real VAE scale factor of 8 (latents 1/8 of the frame, so
    attention stays cheap); 2 gives a factor of 2.
    """
    import torch
    from diffusers import (
        AutoencoderKLTemporalDecoder,
        EulerDiscreteScheduler,
        StableVideoDiffusionPipeline,
        UNetSpatioTemporalConditionModel,
    )
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(0)
    unet = UNetSpatioTemporalConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=2,
        sample_size=32,
        in_channels=8,
        out_channels=4,
        down_block_types=("CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"),
        up_block_types=("UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"),
        cross_attention_dim=32,
        num_attention_heads=8,
        projection_class_embeddings_input_dim=96,
        addition_time_embed_dim=32,
        num_frames=4,
    )
    vae = AutoencoderKLTemporalDecoder(
        block_out_channels=[32, 64] if vae_blocks == 2 else [32] * vae_blocks,
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * vae_blocks,
        latent_channels=4,
    )
    encoder = CLIPVisionModelWithProjection(
        CLIPVisionConfig(
            hidden_size=32, projection_dim=32, num_hidden_layers=5, num_attention_heads=4,
            image_size=224, intermediate_size=37, patch_size=32,
        )
    )
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", interpolation_type="linear",
        num_train_timesteps=1000, prediction_type="v_prediction", sigma_max=700.0, sigma_min=0.002,
        steps_offset=1, timestep_spacing="leading", timestep_type="continuous", trained_betas=None,
        use_karras_sigmas=True,
    )
    pipe = StableVideoDiffusionPipeline(
        vae=vae, image_encoder=encoder, unet=unet, scheduler=scheduler,
        feature_extractor=CLIPImageProcessor(crop_size=224, size=224),
    )
    folder = Path(folder)
    pipe.save_pretrained(folder)
    return folder


if __name__ == "__main__":
    print(build_tiny_pipeline(sys.argv[1] if len(sys.argv) > 1 else "tiny-svd"))
