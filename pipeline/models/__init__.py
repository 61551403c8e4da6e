"""Networks shared by the stages, composed from MONAI networks and blocks."""
