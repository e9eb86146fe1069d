"""Running a loaded policy: helpers shared by capture, interventions and evaluation."""
