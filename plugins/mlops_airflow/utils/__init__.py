"""Small helpers shared by operators and sensors."""
