"""The evaluation protocol: BT.601 colour (``color``), MATLAB-exact bicubic and degradation (``resize``),
PSNR/SSIM on quantized Y with the border shave (``metrics``). One function owns each rule."""
