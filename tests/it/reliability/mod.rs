mod crash;
mod faults;
mod fuzz;
mod races;
mod tenancy;
