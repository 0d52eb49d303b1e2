"""The policy node (ROS 2): the ATE-fine-tuned pi0 driving the cell through the ate_policy runtime."""
