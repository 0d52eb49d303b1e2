"""The simulated cell: a MuJoCo twin of the dual RM75-6s + OmniPicker + three cameras, behind the driver interfaces."""
