"""Files in and out: images (``images``), streaming PNG/TIFF encoders (``writers``), DICOM (``dicom``),
NIfTI volumes (``nifti``) and checked, resumable downloads (``download``)."""
